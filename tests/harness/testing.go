package harness

import (
	"context"
	"testing"
	"time"
)

// Eventually polls fn every 20ms until it returns nil, failing the test with fn's last
// error once timeout has passed. It and WaitFor are how tests wait for something.
func Eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	if err := WaitFor(timeout, fn); err != nil {
		t.Fatalf("not true after %s: %v", timeout, err)
	}
}

// WaitFor polls fn every 20ms until it returns nil (WaitFor returns nil) or timeout has
// passed (WaitFor returns fn's last error), for a test that carries on either way.
func WaitFor(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MinIOForTest starts a MinIO that stops when the test ends. The test fails if it does not
// stop, and a failed test prints the end of its log.
func MinIOForTest(t testing.TB) *MinIO {
	t.Helper()
	m, err := StartMinIO(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stopAtEnd(t, func() *Process { return m.Process }, m.Stop)
	return m
}

// EtcdForTest starts an etcd that stops when the test ends. The test fails if it does not
// stop, and a failed test prints the end of its log.
func EtcdForTest(t testing.TB, opts EtcdOptions) *Etcd {
	t.Helper()
	e, err := StartEtcd(context.Background(), t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	stopAtEnd(t, func() *Process { return e.Process }, e.Stop)
	return e
}

// stopAtEnd stops a server when the test ends, failing the test if it will not stop and
// printing the end of its log if the test failed. proc returns the current process (a
// restarted server has a new one).
func stopAtEnd(t testing.TB, proc func() *Process, stop func() error) {
	t.Cleanup(func() {
		if p := proc(); t.Failed() && p != nil {
			t.Logf("%s log tail:\n%s", p.Name, p.LogTail(4096))
		}
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
}
