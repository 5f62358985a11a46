// Package harness starts the real services StreamHouse's tests run against — MinIO today;
// etcd and agents as they land — on free loopback ports with temporary directories, and
// makes sure they stop.
//
// Binaries come from ./bin, where `make tools` builds them from their Go modules (never
// downloaded); STREAMHOUSE_BIN overrides the directory. A missing binary fails the test
// with the command that builds it rather than skipping it.
//
// Every process is started in its own process group with a parent-death signal, so that
// it dies with the test binary even when a test panics; Stop terminates it (SIGTERM, then
// SIGKILL after a grace period) and reports an error if it does not exit. Tests poll with
// Eventually instead of sleeping.
package harness
