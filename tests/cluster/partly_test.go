package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/streamhouse/streamhouse/gateway"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// TestPartlyWrittenProduceAcksWhatWasWritten: a Produce whose keyed records go to two
// partitions, one of which cannot write (its lease held by an owner that is gone but
// whose lease has not yet expired), fails, and its status carries, as a real client
// receives it, the ack of every record the other partition wrote. Sending again only the
// records not acked, once the partition can write, leaves every record in the log once:
// the partition does not write the first request's records, which it held while it
// waited for the lease, after the agent stopped waiting for them (before, it wrote
// them when it started, and the client's re-send wrote them again at offsets 3-5).
func TestPartlyWrittenProduceAcksWhatWasWritten(t *testing.T) {
	tc := newCluster(t, 1, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Partition 1's lease is held, before the topic exists, by a session nothing renews
	// but the test.
	e := tc.coord.Etcd()
	stale, err := e.Grant(ctx, 120)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Put(ctx, tc.coord.Keys().Lease("split", 1), `{"node":"gone"}`, clientv3.WithLease(stale.ID)); err != nil {
		t.Fatal(err)
	}
	tc.topic("split", 2)

	// Six records, alternating between the partitions.
	keyFor := map[int32][]byte{}
	for i := 0; len(keyFor) < 2; i++ {
		k := []byte(fmt.Sprintf("key-%d", i))
		if p := gateway.PartitionForKey(k, 2); keyFor[p] == nil {
			keyFor[p] = k
		}
	}
	req := &pb.ProduceRequest{Topic: "split"}
	for i := range 6 {
		req.Records = append(req.Records, &pb.Record{Key: keyFor[int32(i%2)], Value: fmt.Appendf(nil, "v%d", i)})
	}
	api, _ := dial(t, tc.agents[0].GRPCAddr)
	pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
	_, err = api.Produce(pctx, req)
	pcancel()
	acks, ok := pb.WrittenAcks(err)
	if err == nil || !ok || len(acks) != len(req.Records) {
		t.Fatalf("produce with partition 1 unable to write: %v; acks %v (%v), want one per record", err, acks, ok)
	}
	t.Logf("refused as %v", err)
	var again []*pb.Record
	for i, a := range acks {
		want := pb.RecordAck{Partition: 0, Offset: int64(i / 2)}
		if i%2 == 1 {
			want = pb.RecordAck{Partition: 1, Offset: pb.NotAcked}
			again = append(again, req.Records[i])
		}
		if a.Partition != want.Partition || a.Offset != want.Offset {
			t.Fatalf("ack of record %d: %v, want %v", i, a, &want)
		}
	}

	// The stale owner's lease ends; the records not acked are sent again.
	if _, err := e.Revoke(ctx, stale.ID); err != nil {
		t.Fatal(err)
	}
	resp, err := api.Produce(ctx, &pb.ProduceRequest{Topic: "split", Records: again})
	if err != nil {
		t.Fatalf("produce of the records not acked: %v", err)
	}
	for i, a := range resp.Acks {
		if a.Partition != 1 || a.Offset != int64(i) {
			t.Fatalf("ack %d of the second produce: %v, want partition 1 offset %d", i, a, i)
		}
	}
	for p, want := range map[int32][]string{0: {"v0", "v2", "v4"}, 1: {"v1", "v3", "v5"}} {
		got, err := api.Fetch(ctx, &pb.FetchRequest{Topic: "split", Partition: p})
		if err != nil {
			t.Fatal(err)
		}
		var values []string
		for _, r := range got.Records {
			values = append(values, string(r.Value))
		}
		if fmt.Sprint(values) != fmt.Sprint(want) || got.HighWaterMark != 3 {
			t.Fatalf("partition %d holds %v (hwm %d), want %v once each", p, values, got.HighWaterMark, want)
		}
	}
}
