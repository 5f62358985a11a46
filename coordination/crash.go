package coordination

import (
	"os"
	"syscall"
)

// CrashEnv names the environment variable that makes an agent kill itself with SIGKILL
// at one point of its work, for the crash tests (tests/cluster): a crash exactly there is
// what the tests must survive, and a kill -9 from outside cannot aim that well. This
// package's point:
//
//	purge-page  after the first transaction of a deleted topic's purge
//
// (the actors package has others). Unset, as always outside tests, it does nothing.
const CrashEnv = "STREAMHOUSE_TEST_CRASH_AT"

var crashAt = os.Getenv(CrashEnv)

// CrashPoint kills the process if CrashEnv names point.
func CrashPoint(point string) {
	if crashAt == point {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
