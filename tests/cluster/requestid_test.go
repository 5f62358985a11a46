package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/streamhouse/streamhouse/coordination"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// TestResentRequestIsWrittenOnceAcrossAFailover: a produce request with a client-chosen
// id, sent again (as after an unknown outcome), is answered with its first offsets and
// not written again: at its owner, and at the next owner after the first is killed,
// which learns the ids from the segments' index entries. Before, the new owner wrote the
// records a second time. An id given to other records is refused.
func TestResentRequestIsWrittenOnceAcrossAFailover(t *testing.T) {
	tc := newCluster(t, 2, 2*time.Second)
	topics := map[string]int32{"orders": 1}
	tc.topic("orders", 1)
	before := tc.waitOwned(60*time.Second, topics)
	victim, _ := victimOf(t, tc, before)
	survivor := tc.agents[0]
	if survivor == victim {
		survivor = tc.agents[1]
	}
	api, _ := dial(t, survivor.GRPCAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	produce := func(req *pb.ProduceRequest) (*pb.ProduceResponse, error) {
		var resp *pb.ProduceResponse
		var err error
		harness.Eventually(t, 60*time.Second, func() error {
			resp, err = api.Produce(ctx, req)
			if status.Code(err) == codes.Unavailable { // the partition is moving
				return err
			}
			return nil
		})
		return resp, err
	}
	if _, err := produce(&pb.ProduceRequest{Topic: "orders", Records: []*pb.Record{{Value: []byte("a")}, {Value: []byte("b")}}}); err != nil {
		t.Fatal(err)
	}
	req := &pb.ProduceRequest{Topic: "orders", RequestId: 0x5eed_1234_abcd_0001,
		Records: []*pb.Record{{Value: []byte("c")}, {Value: []byte("d")}, {Value: []byte("e")}}}
	first, err := produce(req)
	if err != nil {
		t.Fatal(err)
	}
	if first.Acks[0].Offset != 2 || first.Acks[2].Offset != 4 {
		t.Fatalf("first acks %v, want offsets 2-4", first.Acks)
	}
	same := func(what string) {
		t.Helper()
		got, err := produce(req)
		if err != nil || !proto.Equal(got, first) {
			t.Fatalf("%s: %v, %v; want the first answer %v", what, got, err, first)
		}
	}
	same("re-send to the owner")

	if err := victim.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p := coordination.Partition{Topic: "orders"}
	harness.Eventually(t, 60*time.Second, func() error {
		if o, ok := tc.mirror.Owner(p); !ok || o.Node != survivor.Config.Node {
			return fmt.Errorf("owner %v (%v), want %s", o, ok, survivor.Config.Node)
		}
		return nil
	})
	same("re-send to the next owner")

	other := &pb.ProduceRequest{Topic: "orders", RequestId: req.RequestId, Records: req.Records[:2]}
	if _, err := produce(other); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("the id with other records: %v, want InvalidArgument", err)
	}
	got, err := api.Fetch(ctx, &pb.FetchRequest{Topic: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	var values []string
	for _, r := range got.Records {
		values = append(values, string(r.Value))
	}
	if fmt.Sprint(values) != "[a b c d e]" || got.HighWaterMark != 5 {
		t.Fatalf("the partition holds %v (hwm %d), want [a b c d e] once each", values, got.HighWaterMark)
	}
}
