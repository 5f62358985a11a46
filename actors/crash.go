package actors

import (
	"os"
	"syscall"
)

// CrashEnv names the environment variable that makes an agent kill itself with SIGKILL
// at one point of its work, for the crash tests (tests/cluster): a crash exactly there is
// what the tests must survive, and a kill -9 from outside cannot aim that well. Points:
//
//	merge-put   after a merge object is written, before any index swap
//	merge-swap  after the first index swap of a merge object
//
// Unset (always, outside tests) it does nothing.
const CrashEnv = "STREAMHOUSE_TEST_CRASH_AT"

var crashAt = os.Getenv(CrashEnv)

// crashPoint kills the process if CrashEnv names point.
func crashPoint(point string) {
	if crashAt == point {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
