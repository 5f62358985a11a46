package harness

import (
	"context"
	"testing"
	"time"
)

// Eventually polls fn every 20ms until it returns nil, failing the test with fn's last
// error once timeout has passed. It is the only way tests wait for something.
func Eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %s: %v", timeout, err)
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
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("minio log tail:\n%s", m.Process.LogTail(4096))
		}
		if err := m.Stop(); err != nil {
			t.Error(err)
		}
	})
	return m
}
