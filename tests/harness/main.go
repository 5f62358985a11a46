package harness

import (
	"context"
	"fmt"
	"os"
	"testing"
)

// Services names what a test binary shares: each non-nil pointer receives a server
// started before its tests run and stopped after them.
type Services struct {
	Etcd  **Etcd
	MinIO **MinIO
	// Streamhouse builds bin/streamhouse first, for tests that start agent processes.
	Streamhouse bool
}

// Main starts the services in a temporary directory, runs the tests and stops the
// services; it returns the exit code for os.Exit. A service that fails to start fails the
// run without running any test; one that does not stop cleanly fails it too.
func Main(m *testing.M, s Services) (code int) {
	dir, err := os.MkdirTemp("", "streamhouse-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	var stops []func() error
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			if err := stops[i](); err != nil {
				fmt.Fprintln(os.Stderr, err)
				code = 1
			}
		}
	}()
	if s.Etcd != nil {
		if *s.Etcd, err = StartEtcd(ctx, dir, EtcdOptions{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		stops = append(stops, (*s.Etcd).Stop)
	}
	if s.MinIO != nil {
		if *s.MinIO, err = StartMinIO(ctx, dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		stops = append(stops, (*s.MinIO).Stop)
	}
	if s.Streamhouse {
		if _, err := StreamhouseBinary(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}
