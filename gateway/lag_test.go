package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// The lag collector exports hwm − committed for the partitions its node owns, and nothing
// for the others.
func TestLagCollector(t *testing.T) {
	e := harness.EtcdForTest(t, harness.EtcdOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	coord, err := coordination.New(cli, coordination.Options{Root: "/lag-test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := coord.CreateTopic(ctx, coordination.TopicSpec{Name: "orders", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	mine, err := coord.NewSession(ctx, coordination.NodeInfo{Node: "agent-1"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close(ctx)
	other, err := coord.NewSession(ctx, coordination.NodeInfo{Node: "agent-2"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	for p, s := range []*coordination.Session{mine, other} {
		l, err := s.Acquire(ctx, "orders", int32(p))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Commit(ctx, coordination.SegmentMeta{Object: "x", Base: 0, Last: 99, Records: 100}); err != nil {
			t.Fatal(err)
		}
	}
	if err := coord.CommitOffsets(ctx, "billing", map[coordination.Partition]coordination.GroupOffset{
		{Topic: "orders", Partition: 0}: {Offset: 30}, {Topic: "orders", Partition: 1}: {Offset: 90},
	}); err != nil {
		t.Fatal(err)
	}
	mirror := coord.NewMirror()
	if err := mirror.Load(ctx); err != nil {
		t.Fatal(err)
	}

	want := `
# HELP streamhouse_consumer_group_lag Records a consumer group has yet to commit on a partition: high-water mark minus committed offset. Exported by the agent that owns the partition.
# TYPE streamhouse_consumer_group_lag gauge
streamhouse_consumer_group_lag{group="billing",partition="0",topic="orders"} 70
`
	if err := testutil.CollectAndCompare(gateway.NewLagCollector(coord, mirror, "agent-1", zap.NewNop()), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	all := want + `streamhouse_consumer_group_lag{group="billing",partition="1",topic="orders"} 10
`
	if err := testutil.CollectAndCompare(gateway.NewLagCollector(coord, mirror, "", zap.NewNop()), strings.NewReader(all)); err != nil {
		t.Fatal(err)
	}
}
