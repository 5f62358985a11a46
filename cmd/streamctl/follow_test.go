package main

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// idleTopicServer serves a topic of 4 partitions at offset 10, all idle but partition 2,
// which gets a record at offset 10 after a while; a fetch at the end waits as long as it
// asks to. It counts the fetches.
type idleTopicServer struct {
	pb.UnimplementedStreamHouseServer
	record  time.Time // when partition 2's record comes
	fetches atomic.Int32
}

func (s *idleTopicServer) DescribeTopic(_ context.Context, req *pb.DescribeTopicRequest) (*pb.DescribeTopicResponse, error) {
	d := &pb.DescribeTopicResponse{Topic: &pb.Topic{Name: req.Name, Partitions: 4}}
	for p := range int32(4) {
		d.Partitions = append(d.Partitions, &pb.PartitionInfo{Partition: p, HighWaterMark: 10})
	}
	return d, nil
}

func (s *idleTopicServer) Fetch(ctx context.Context, req *pb.FetchRequest) (*pb.FetchResponse, error) {
	s.fetches.Add(1)
	until := time.Now().Add(time.Duration(req.MaxWaitMs) * time.Millisecond)
	if req.Partition == 2 && s.record.Before(until) {
		until = s.record
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Until(until)):
	}
	if req.Partition == 2 && !time.Now().Before(s.record) {
		return &pb.FetchResponse{Records: []*pb.Record{{Offset: 10, Value: []byte("late")}}, HighWaterMark: 11}, nil
	}
	return &pb.FetchResponse{HighWaterMark: 10}, nil
}

// A follower of an idle topic of several partitions long-polls them all at once, rather
// than fetching each again every few milliseconds, and prints a record as it comes.
func TestFollowingAnIdleTopicLongPolls(t *testing.T) {
	const after = 1500 * time.Millisecond
	srv := &idleTopicServer{record: time.Now().Add(after)}
	addr := fakeAgent(t, srv)
	var out strings.Builder
	root, _ := newRoot(strings.NewReader(""), &out)
	root.SetArgs([]string{"--addr", addr, "consume", "events", "--from", "latest", "--follow", "--limit", "1"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	late := time.Since(srv.record)
	if got := strings.TrimSpace(out.String()); !strings.Contains(got, "late") {
		t.Fatalf("printed %q, want the record", got)
	}
	// A round without waiting, then every partition long-polled once or twice (a
	// second apart) until the record: at most 12. Polling each every 50 ms would be
	// over a hundred.
	if n := srv.fetches.Load(); n > 12 {
		t.Fatalf("%d fetches in %v of an idle topic of 4 partitions", n, after)
	}
	// The other partitions' long-polls end half a second after the record comes: the
	// record is printed without waiting for them.
	if late > 400*time.Millisecond {
		t.Fatalf("the record was printed %v after it came", late)
	}
	t.Logf("%d fetches; printed %v after the record came", srv.fetches.Load(), late.Round(time.Millisecond))
}
