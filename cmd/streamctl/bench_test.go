package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// fakeLog stands in for the cluster in unit tests of the load generator: a topic of
// partitions kept in memory, whose produce and fetch behave as the hooks say.
type fakeLog struct {
	pb.StreamHouseClient // nil: a call the test did not expect panics
	partitions           int32

	mu      sync.Mutex
	records [][]*pb.Record
	written chan struct{} // closed, and replaced, at each write
	// produced, when set, runs before a produce is written (and may block on ctx).
	produced func(ctx context.Context, req *pb.ProduceRequest)
	// answer, when set, is the error a produce returns once its records are written (a
	// request whose answer was lost).
	answer func(req *pb.ProduceRequest) error
}

func newFakeLog(partitions int32) *fakeLog {
	return &fakeLog{partitions: partitions, records: make([][]*pb.Record, partitions), written: make(chan struct{})}
}

func (f *fakeLog) DescribeTopic(context.Context, *pb.DescribeTopicRequest, ...grpc.CallOption) (*pb.DescribeTopicResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := &pb.DescribeTopicResponse{}
	for p := range f.partitions {
		d.Partitions = append(d.Partitions, &pb.PartitionInfo{Partition: p, HighWaterMark: int64(len(f.records[p]))})
	}
	return d, nil
}

func (f *fakeLog) Produce(ctx context.Context, req *pb.ProduceRequest, _ ...grpc.CallOption) (*pb.ProduceResponse, error) {
	if f.produced != nil {
		f.produced(ctx, req)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p := *req.Partition
	for _, r := range req.Records {
		f.records[p] = append(f.records[p], &pb.Record{Value: r.Value, Offset: int64(len(f.records[p]))})
	}
	close(f.written)
	f.written = make(chan struct{})
	if f.answer != nil {
		if err := f.answer(req); err != nil {
			return nil, err
		}
	}
	return &pb.ProduceResponse{}, nil
}

// Fetch answers the records from the request's offset on; at the partition's end it
// waits, up to the request's MaxWaitMs, for one to be written there, as a long-poll does.
func (f *fakeLog) Fetch(ctx context.Context, req *pb.FetchRequest, _ ...grpc.CallOption) (*pb.FetchResponse, error) {
	timeout := time.After(time.Duration(req.MaxWaitMs) * time.Millisecond)
	for {
		f.mu.Lock()
		recs := f.records[req.Partition][min(req.Offset, int64(len(f.records[req.Partition]))):]
		written := f.written
		f.mu.Unlock()
		if len(recs) > 0 || req.MaxWaitMs == 0 {
			return &pb.FetchResponse{Records: recs}, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return &pb.FetchResponse{}, nil
		case <-written:
		}
	}
}

func benchFlags(mutate func(o *benchOptions)) benchOptions {
	o := benchOptions{topic: "t", partitions: 1, recordSize: 64, producers: 1, batch: 1, inFlight: 8,
		duration: time.Second, fetchBytes: 1 << 20}
	mutate(&o)
	return o
}

// At a fixed rate the cluster cannot keep, the records that fell due and could not be
// sent are counted, and the run fails rather than report percentiles of only the
// requests that went out.
func TestBenchCountsWhatFellBehindItsRate(t *testing.T) {
	f := newFakeLog(1)
	release := make(chan struct{})
	f.produced = func(ctx context.Context, _ *pb.ProduceRequest) {
		select { // a stalled cluster: no answer until the run is over
		case <-release:
		case <-ctx.Done():
		}
	}
	o := benchFlags(func(o *benchOptions) { o.rate, o.duration = 20000, 2*time.Second })
	// Released well after the run's end: a late timer must not free the window first.
	done := time.AfterFunc(o.duration+time.Second, func() { close(release) })
	defer done.Stop()
	r, err := runBench(context.Background(), f, "produce", o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	due := uint64(o.rate * o.duration.Seconds())
	sent := r.Produce.Requests + r.Produce.Errors
	if sent != scheduledWindow {
		t.Fatalf("%d requests went out; the window holds %d", sent, scheduledWindow)
	}
	if got := sent + r.Produce.Unsent; got < due*98/100 || got > due {
		t.Fatalf("%d sent + %d unsent = %d records accounted for; %d fell due", sent, r.Produce.Unsent, got, due)
	}
	if r.Produce.BehindMs < 1600 {
		t.Fatalf("ended %.0f ms behind; the window was full from %.0f ms on", r.Produce.BehindMs, 1000*float64(scheduledWindow)/o.rate)
	}
	if err := r.failure(); err == nil || !strings.Contains(err.Error(), "the rate was not kept") {
		t.Fatalf("a run that fell behind its rate: %v", err)
	}
	var out strings.Builder
	if err := r.print(&out, false); err != nil || !strings.Contains(out.String(), "request due → ack") || !strings.Contains(out.String(), "behind the rate") {
		t.Fatalf("report %v:\n%s", err, out.String())
	}
}

// A run every record of which was refused has measured nothing, and says so.
func TestBenchFailsWhenNothingWasAcked(t *testing.T) {
	r := &benchReport{Mode: "produce", Produce: &sideReport{Errors: 12}}
	if err := r.failure(); err == nil || !strings.Contains(err.Error(), "no record was acked (12 requests failed)") {
		t.Fatalf("failure = %v", err)
	}
	r.Produce.Records = 1
	if err := r.failure(); err != nil {
		t.Fatalf("a run with records acked failed: %v", err)
	}
	r.Undelivered = 3
	if err := r.failure(); err == nil || !strings.Contains(err.Error(), "3 records written by the producers' end (every acked one among them) were not delivered") {
		t.Fatalf("failure with records undelivered = %v", err)
	}
	// At a fixed rate a failed request is a latency left out: the figures fall short.
	r = &benchReport{Mode: "produce", Rate: 1000, Produce: &sideReport{Records: 999, Errors: 1, FirstError: "unavailable"}}
	if err := r.failure(); err == nil || !strings.Contains(err.Error(), "1 produce requests failed (the first: unavailable)") {
		t.Fatalf("a fixed-rate run with a request failed: %v", err)
	}
	r.Rate = 0
	if err := r.failure(); err != nil {
		t.Fatalf("a max-rate run with a request failed (its throughput counts only the acked): %v", err)
	}
}

// A following consumer with several partitions reads a record on one as soon as it is
// there, not after the long-poll of another partition at its end has run out.
func TestBenchFollowsEachPartitionOnItsOwn(t *testing.T) {
	f := newFakeLog(2)
	// The producers write partition 1 only: a fetch of partition 0 waits out its
	// long-poll every time.
	f.produced = func(_ context.Context, req *pb.ProduceRequest) { *req.Partition = 1 }
	o := benchFlags(func(o *benchOptions) {
		o.partitions, o.consumers, o.rate, o.duration = 2, 1, 100, 2*time.Second
	})
	r, err := runBench(context.Background(), f, "e2e", o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if r.Produce.Records == 0 || r.Consume.Records != r.Produce.Records || r.Undelivered != 0 {
		t.Fatalf("%d records acked, %d delivered, %d undelivered", r.Produce.Records, r.Consume.Records, r.Undelivered)
	}
	// Partition 1's records wait for nothing. Read in turn with partition 0, each would
	// wait for what is left of its long-poll (up to followWait/2 each): a median of a
	// quarter of followWait.
	if r.EndToEnd.P50 >= followWait/10 {
		t.Fatalf("e2e p50 %.1f ms: the records waited for another partition's long-poll of %d ms", r.EndToEnd.P50, followWait)
	}
}

// A catch-up that --duration ends early says how many records it left.
func TestBenchCatchUpCountsWhatItLeftUnread(t *testing.T) {
	f := newFakeLog(1)
	for i := range 100 {
		v := make([]byte, 16)
		binary.BigEndian.PutUint64(v, uint64(i))
		f.records[0] = append(f.records[0], &pb.Record{Value: v, Offset: int64(i)})
	}
	o := benchFlags(func(o *benchOptions) { o.fetchBytes, o.duration = 1, 200*time.Millisecond })
	// A record per fetch and 50 ms a fetch (the fake server's service time, not a wait
	// for a condition): a few records in the run's 200 ms.
	slow := &slowFetch{fakeLog: f, each: func() { time.Sleep(50 * time.Millisecond) }}
	r, err := runBench(context.Background(), slow, "consume", o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if r.Consume.Records+r.Consume.Unread != 100 || r.Consume.Unread == 0 {
		t.Fatalf("read %d, unread %d, of 100", r.Consume.Records, r.Consume.Unread)
	}
	var out strings.Builder
	if err := r.print(&out, false); err != nil || !strings.Contains(out.String(), fmt.Sprintf("%d records left unread", r.Consume.Unread)) {
		t.Fatalf("report %v:\n%s", err, out.String())
	}
}

// slowFetch hands a fetch of one record at a time to fakeLog, calling each first.
type slowFetch struct {
	*fakeLog
	each func()
}

func (s *slowFetch) Fetch(ctx context.Context, req *pb.FetchRequest, opts ...grpc.CallOption) (*pb.FetchResponse, error) {
	s.each()
	resp, err := s.fakeLog.Fetch(ctx, req, opts...)
	if err == nil && len(resp.Records) > 1 {
		resp.Records = resp.Records[:1]
	}
	return resp, err
}

// Rates whose requests would come more often than a nanosecond, or less often than once
// in the run, are refused.
func TestBenchRefusesRatesItCannotSchedule(t *testing.T) {
	for _, c := range []struct {
		rate float64
		want string
	}{
		{1e12, "more often than every nanosecond"},
		{0.5, "longer than --duration"},
	} {
		o := benchFlags(func(o *benchOptions) { o.rate, o.batch = c.rate, 100 })
		if err := o.validate("produce"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--rate %v: %v, want %q", c.rate, err, c.want)
		}
	}
}

// An e2e run counts what its consumers did not reach of the log the producers left, not
// the records acked less the records read: records a failed request wrote are read too,
// and would hide as many acked ones a consumer never got to.
func TestBenchCountsUndeliveredByOffset(t *testing.T) {
	defer func(d time.Duration) { drainTimeout = d }(drainTimeout)
	drainTimeout = 300 * time.Millisecond
	f := newFakeLog(2)
	var n atomic.Int64
	// Two requests in three go to partition 0, whose answers are lost after the write;
	// the third goes to partition 1 and is acked.
	f.produced = func(_ context.Context, req *pb.ProduceRequest) {
		*req.Partition = 0
		if n.Add(1)%3 == 0 {
			*req.Partition = 1
		}
	}
	f.answer = func(req *pb.ProduceRequest) error {
		if *req.Partition == 0 {
			return status.Error(codes.Unavailable, "answer lost")
		}
		return nil
	}
	// Partition 1 delivers its first record and then nothing.
	stalled := &stalledFetch{fakeLog: f, partition: 1, upTo: 1}
	o := benchFlags(func(o *benchOptions) {
		o.partitions, o.consumers, o.rate, o.duration = 2, 2, 300, time.Second
	})
	r, err := runBench(context.Background(), stalled, "e2e", o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	want := uint64(len(f.records[1]) - 1)
	f.mu.Unlock()
	if r.Produce.Records == 0 || r.Consume.Records < r.Produce.Records {
		t.Fatalf("%d records acked, %d read: the test wants more read than acked", r.Produce.Records, r.Consume.Records)
	}
	if r.Undelivered != want {
		t.Fatalf("%d undelivered, want the %d records of partition 1 after its first", r.Undelivered, want)
	}
	if err := r.failure(); err == nil || !strings.Contains(err.Error(), "were not delivered") {
		t.Fatalf("failure = %v", err)
	}
}

// An e2e run whose read of the log's end fails after the producers' end says so, and
// fails, rather than count nothing undelivered without having measured it.
func TestBenchSaysWhenTheLogEndIsUnknown(t *testing.T) {
	f := newFakeLog(1)
	d := &failingDescribe{fakeLog: f, ok: 1} // the run's first describe, at its start
	o := benchFlags(func(o *benchOptions) { o.rate, o.duration = 100, 500*time.Millisecond })
	r, err := runBench(context.Background(), d, "e2e", o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if r.Undelivered != 0 || r.StoppedBy != "" || r.EndUnknown != "Unavailable: etcd is away" {
		t.Fatalf("undelivered %d, stopped by %q, end unknown %q", r.Undelivered, r.StoppedBy, r.EndUnknown)
	}
	if err := r.failure(); err == nil || !strings.Contains(err.Error(), "the log's end after the producers' could not be read") {
		t.Fatalf("failure = %v", err)
	}
	var out strings.Builder
	if err := r.print(&out, false); err != nil || !strings.Contains(out.String(), "undelivered records not counted") {
		t.Fatalf("report %v:\n%s", err, out.String())
	}
}

// stalledFetch hands fetches to fakeLog, but of partition it serves no record from upTo
// on: a consumer that cannot get past there.
type stalledFetch struct {
	*fakeLog
	partition int32
	upTo      int64
}

func (s *stalledFetch) Fetch(ctx context.Context, req *pb.FetchRequest, opts ...grpc.CallOption) (*pb.FetchResponse, error) {
	if req.Partition != s.partition || req.Offset < s.upTo {
		resp, err := s.fakeLog.Fetch(ctx, req, opts...)
		if err == nil && req.Partition == s.partition {
			resp.Records = resp.Records[:min(int64(len(resp.Records)), s.upTo-req.Offset)]
		}
		return resp, err
	}
	select { // the long-poll runs out with nothing
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Duration(req.MaxWaitMs) * time.Millisecond):
		return &pb.FetchResponse{}, nil
	}
}

// failingDescribe answers the first ok describes and fails the rest.
type failingDescribe struct {
	*fakeLog
	ok    int64
	calls atomic.Int64
}

func (d *failingDescribe) DescribeTopic(ctx context.Context, req *pb.DescribeTopicRequest, opts ...grpc.CallOption) (*pb.DescribeTopicResponse, error) {
	if d.calls.Add(1) > d.ok {
		return nil, status.Error(codes.Unavailable, "etcd is away")
	}
	return d.fakeLog.DescribeTopic(ctx, req, opts...)
}

// An e2e run stopped by an error every request meets names that error, not the read of
// the log's end that the stop cut short.
func TestBenchE2EStoppedNamesItsCause(t *testing.T) {
	f := newFakeLog(1)
	f.answer = func(*pb.ProduceRequest) error { return status.Error(codes.PermissionDenied, "not yours") }
	o := benchFlags(func(o *benchOptions) { o.rate, o.duration = 100, 2*time.Second })
	r, err := runBench(context.Background(), f, "e2e", o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if r.StoppedBy != "produce: PermissionDenied: not yours" || r.EndUnknown != "" || r.Undelivered != 0 {
		t.Fatalf("stopped by %q, end unknown %q, undelivered %d", r.StoppedBy, r.EndUnknown, r.Undelivered)
	}
}
