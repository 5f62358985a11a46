package coordination_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// An etcd client dialled with DialOptions counts its calls by method and code, errors
// included, and a watch once when it ends.
func TestEtcdClientMetrics(t *testing.T) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop(), DialOptions: coordination.DialOptions()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	calls := func(method, code string) float64 {
		return harness.Counter(t, "streamhouse_etcd_requests_total", map[string]string{"method": method, "code": code})
	}
	ranges, puts, canceled, watches := calls("Range", "OK"), calls("Put", "OK"), calls("Range", "Canceled"), calls("Watch", "Canceled")

	ctx := ctxT(t)
	if _, err := c.Put(ctx, "/metrics-test/k", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "/metrics-test/k"); err != nil {
		t.Fatal(err)
	}
	dead, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Get(dead, "/metrics-test/k"); err == nil {
		t.Fatal("a Get with a canceled context succeeded")
	}
	wctx, wcancel := context.WithCancel(ctx)
	wch := c.Watch(wctx, "/metrics-test/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	<-wch // created
	wcancel()
	for range wch {
	}

	if d := calls("Put", "OK") - puts; d != 1 {
		t.Errorf("Put OK counted %v times, want 1", d)
	}
	if d := calls("Range", "OK") - ranges; d != 1 {
		t.Errorf("Range OK counted %v times, want 1", d)
	}
	if d := calls("Range", "Canceled") - canceled; d != 1 {
		t.Errorf("Range Canceled counted %v times, want 1", d)
	}
	// The client closes the watch stream when its last watcher goes; allow it a moment.
	deadline := time.Now().Add(5 * time.Second)
	for calls("Watch", "Canceled")-watches < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if d := calls("Watch", "Canceled") - watches; d != 1 {
		t.Errorf("ended Watch stream counted %v times as Canceled, want 1", d)
	}
}
