package actors

import "github.com/streamhouse/streamhouse/coordination"

// CrashEnv is coordination.CrashEnv. The agent's points:
//
//	merge-put   after a merge object is written, before any index swap
//	merge-swap  after the first index swap of a merge object
const CrashEnv = coordination.CrashEnv

func crashPoint(point string) { coordination.CrashPoint(point) }
