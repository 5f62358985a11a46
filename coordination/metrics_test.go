package coordination_test

import (
	"context"
	"fmt"
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
	writes := func(method string) float64 {
		return harness.Counter(t, "streamhouse_etcd_writes_total", map[string]string{"method": method})
	}
	ranges, puts, canceled, watches := calls("Range", "OK"), calls("Put", "OK"), calls("Range", "Canceled"), calls("Watch", "Canceled")
	putWrites, txnWrites, rangeWrites := writes("Put"), writes("Txn"), writes("Range")

	ctx := ctxT(t)
	if _, err := c.Put(ctx, "/metrics-test/k", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "/metrics-test/k"); err != nil {
		t.Fatal(err)
	}
	// A transaction of reads is served as a read; one with a put goes through etcd's
	// log whichever branch runs, as its compare here fails.
	if _, err := c.Txn(ctx).If(clientv3.Compare(clientv3.Version("/metrics-test/k"), ">", 0)).
		Then(clientv3.OpGet("/metrics-test/k")).Else(clientv3.OpGet("/metrics-test/")).Commit(); err != nil {
		t.Fatal(err)
	}
	if resp, err := c.Txn(ctx).If(clientv3.Compare(clientv3.Version("/metrics-test/k"), "=", 0)).
		Then(clientv3.OpPut("/metrics-test/k", "w")).Commit(); err != nil || resp.Succeeded {
		t.Fatalf("a transaction whose compare fails: %v, succeeded %v", err, resp != nil && resp.Succeeded)
	}
	dead, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Get(dead, "/metrics-test/k"); err == nil {
		t.Fatal("a Get with a canceled context succeeded")
	}
	if _, err := c.Put(dead, "/metrics-test/k", "x"); err == nil {
		t.Fatal("a Put with a canceled context succeeded")
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
	// Writes: the Put that succeeded and the transaction with a put, not the reads, the
	// read-only transaction or the Put that never reached etcd.
	if d := writes("Put") - putWrites; d != 1 {
		t.Errorf("Put writes counted %v times, want 1", d)
	}
	if d := writes("Txn") - txnWrites; d != 1 {
		t.Errorf("Txn writes counted %v times, want 1 (the one with a put)", d)
	}
	if d := writes("Range") - rangeWrites; d != 0 {
		t.Errorf("Range counted %v times as a write", d)
	}
	// The client closes the watch stream when its last watcher goes; allow it a moment.
	harness.Eventually(t, 5*time.Second, func() error {
		if d := calls("Watch", "Canceled") - watches; d != 1 {
			return fmt.Errorf("ended Watch stream counted %v times as Canceled, want 1", d)
		}
		return nil
	})
}
