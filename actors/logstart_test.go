package actors

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// A new owner says where its log starts from its first answer. Before, the log start came
// from the compactor's first load of the index (a second or more after activation, never
// with compaction off), and until then fetch answers and Kafka's ListOffsets(earliest)
// said 0 of a trimmed log: a consumer reset to the earliest offset fetched 0, was told it
// is out of range, and asked again.
func TestAStartingOwnerKnowsWhereItsLogStarts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	l := f.lease(t, "trimmed", 1, 0)
	segs, rev := commitSegments(t, l, 3)
	if _, err := l.Rewrite(ctx, segs[:2], rev, nil, nil); err != nil { // retention removed [0, 19]
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	node := startNodesWith(t, f, 1, func(c *NodeConfig) { c.CompactInterval = -1 })[0]
	resp, err := node.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "trimmed", Offset: math.MaxInt64, MaxBytes: 1})
	if err != nil || resp.Code != partitionpb.Code_CODE_OUT_OF_RANGE || resp.LogStartOffset != 20 || resp.HighWaterMark != 30 {
		t.Fatalf("fetch past the end of a log trimmed to [20, 30): log start %d, hwm %d, %v %v",
			resp.GetLogStartOffset(), resp.GetHighWaterMark(), resp.GetCode(), err)
	}
}

// commitSegments indexes n segments of 10 records from offset 0 under l, with no objects
// (what is tested reads the index alone), and returns them and the last commit's revision.
func commitSegments(t *testing.T, l *coordination.Lease, n int) ([]coordination.SegmentMeta, int64) {
	t.Helper()
	var segs []coordination.SegmentMeta
	var rev int64
	for base := int64(0); base < int64(n)*10; base += 10 {
		m := coordination.SegmentMeta{Object: fmt.Sprintf("data/%s-%d.obj", l.Partition(), base), Base: base, Last: base + 9,
			Records: 10, Bytes: 1000, ZBytes: 400, Epoch: l.Epoch(), WrittenMs: time.Now().UnixMilli()}
		var err error
		if rev, err = l.Commit(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		segs = append(segs, m)
	}
	return segs, rev
}

// A removal of every segment whose answer was lost leads to a reload of the owner's view
// that finds the index empty: the log starts at the high-water mark then. Before, the
// view kept the log start from before the removal, which fetch answers and ListOffsets
// named until the next retention run, days later perhaps.
func TestAReloadOfAnEmptiedIndexMovesTheLogStart(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	l := f.lease(t, "emptied", 1, 0)
	segs, rev := commitSegments(t, l, 2)
	plog := newPartitionLog(l, 0, coordination.TopicSpec{}, &recentLog{}, zap.NewNop())
	if err := plog.load(ctx, f.c); err != nil || plog.logStart.Load() != 0 {
		t.Fatalf("load: log start %d, %v", plog.logStart.Load(), err)
	}
	if _, err := l.Rewrite(ctx, segs, rev, nil, nil); err != nil { // applied, its answer lost
		t.Fatal(err)
	}
	plog.reload()
	if err := plog.load(ctx, f.c); err != nil || plog.logStart.Load() != 20 {
		t.Fatalf("the reload of an emptied index of [0, 20): log start %d, want 20: %v", plog.logStart.Load(), err)
	}
}

// A partition that waits for its lease holds the produce requests that come meanwhile in
// the agent's pending budget, and one copy of each request however often its callers
// re-send it: a client's call re-sends an unanswered attempt every few seconds, and the
// wait may be an earlier owner's whole session. Before, each attempt was held again, a
// decoded copy of up to 16 MiB each, in no budget. Every caller gets the one outcome, and
// the records are written once; the id given to other records is refused.
func TestAStartingPartitionHoldsOneCopyOfARequest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	held := f.lease(t, "starting", 1, 0) // an earlier owner, not gone yet
	node := startNodes(t, f, 1)[0]
	records := make([]*partitionpb.Record, 100)
	for i := range records {
		records[i] = &partitionpb.Record{Value: make([]byte, 1000)}
	}
	type result struct {
		resp *partitionpb.ProduceResponse
		err  error
	}
	// Attempts of the request that reach the partition: its callers' first ones, then
	// their re-sends once an attempt's timeout (5 s) passes unanswered.
	var attempts atomic.Int32
	hook := func(msg any) {
		if m, ok := msg.(*partitionpb.ProduceRequest); ok && m.RequestId == 77 && len(m.Records) == len(records) {
			attempts.Add(1)
		}
	}
	testReceiveHook.Store(&hook)
	t.Cleanup(func() { testReceiveHook.Store(nil) })
	results := make(chan result, 3)
	for range 3 { // three callers of one request: its attempts and re-sends
		go func() {
			resp, err := node.Client().ProduceRequest(ctx, &partitionpb.ProduceRequest{Topic: "starting", Records: records, RequestId: 77})
			results <- result{resp, err}
		}()
	}
	one := pendingBytes(100*1000, 100, 0)
	harness.Eventually(t, 10*time.Second, func() error {
		if used := node.pending.used.Load(); used < one {
			return fmt.Errorf("%d bytes pending while a request of %d waits", used, one)
		}
		return nil
	})
	// The same id given to other records is refused, as it is once the partition runs.
	other, err := node.Client().ProduceRequest(ctx, &partitionpb.ProduceRequest{Topic: "starting", Records: records[:99], RequestId: 77})
	if err != nil || other.Code != partitionpb.Code_CODE_INVALID_ARGUMENT {
		t.Fatalf("the request's id given to 99 records while it waits: %v %v, want invalid", other, err)
	}
	harness.Eventually(t, 20*time.Second, func() error {
		if n := attempts.Load(); n < 6 {
			return fmt.Errorf("%d attempts of the request reached the partition", n)
		}
		return nil
	})
	if used := node.pending.used.Load(); used != one {
		t.Fatalf("%d bytes pending for three callers of one request of %d bytes, and their re-sends", used, one)
	}
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r := <-results
		if r.err != nil || r.resp.Code != partitionpb.Code_CODE_OK || r.resp.BaseOffset != 0 || r.resp.Count != 100 {
			t.Fatalf("a caller's answer: %v %v", r.resp, r.err)
		}
	}
	if hwm, err := f.c.HWM(ctx, "starting", 0); err != nil || hwm != 100 {
		t.Fatalf("high-water mark %d after one request of 100 records: %v", hwm, err)
	}
	if used := node.pending.used.Load(); used != 0 {
		t.Fatalf("%d bytes still pending after every caller was answered", used)
	}
}

// An index entry that does not decode (a hand edit, a bug) does not keep its partition
// from starting: the log start is read from the first segment's key. Before, reading it
// from the entry's value failed every activation of the partition.
func TestAPartitionWithABadFirstEntryStarts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	l := f.lease(t, "badentry", 1, 0)
	segs, _ := commitSegments(t, l, 1)
	if _, err := f.c.Etcd().Put(ctx, f.c.Keys().Segment("badentry", 0, segs[0].Base), "not an entry"); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	node := startNodesWith(t, f, 1, func(c *NodeConfig) { c.CompactInterval = -1 })[0]
	resp, err := node.Client().Produce(ctx, coordination.Partition{Topic: "badentry"}, []*partitionpb.Record{{Value: []byte("v")}})
	if err != nil || resp.Code != partitionpb.Code_CODE_OK || resp.BaseOffset != 10 {
		t.Fatalf("produce to a partition whose first entry is bad: %v %v", resp, err)
	}
	fetch, err := node.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "badentry", Offset: math.MaxInt64, MaxBytes: 1})
	if err != nil || fetch.LogStartOffset != 0 || fetch.HighWaterMark != 11 {
		t.Fatalf("its log start and high-water mark: %v %v, want 0 (the bad entry's key) and 11", fetch, err)
	}
}
