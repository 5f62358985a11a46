// Package observability_test checks what an operator sees: a real Prometheus scraping a
// loaded cluster of agent processes answers every query of the shipped Grafana dashboard;
// a killed or paused agent shows in the metrics; /readyz follows etcd.
package observability_test

import (
	"os"
	"testing"

	"github.com/streamhouse/streamhouse/tests/harness"
)

var (
	etcd  *harness.Etcd
	minio *harness.MinIO
)

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, harness.Services{Etcd: &etcd, MinIO: &minio, Streamhouse: true}))
}
