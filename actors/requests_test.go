package actors

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// TestResentProduceIsWrittenOnce holds the store's PUTs longer than several attempt
// timeouts, so the client re-sends its request while the first attempt waits for the
// store; once the store answers, the producer is acked with the first attempt's offsets
// and the partition holds the records once. With room in the budget for a second copy, a
// re-send without the request log writes the records twice; with room for one, it is
// refused (ResourceExhausted) although the first attempt then commits.
func TestResentProduceIsWrittenOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		budget int64
	}{
		{"room for two copies", 1 << 20},
		{"room for one copy", 15000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "t", Partitions: 1}); err != nil {
				t.Fatal(err)
			}
			store := &faultyStore{Store: f.store, hold: make(chan struct{})}
			f.store = store
			nodes := startNodesWith(t, f, 1, func(c *NodeConfig) {
				c.Client = ClientOptions{AttemptTimeout: 300 * time.Millisecond, RetryFor: 30 * time.Second}
				c.MaxPendingBytes = tc.budget
			})
			p := coordination.Partition{Topic: "t", Partition: 0}
			resent := resentCounter(t, p.Topic)
			got := produceAsync(nodes[0].Client(), p, tenRecords())
			store.waitPuts(t, 1)
			resent.wait(t, 1) // the first attempt timed out and the client re-sent it
			close(store.hold)
			r := <-got
			if r.err != nil || r.resp.Code != partitionpb.Code_CODE_OK || r.resp.BaseOffset != 0 || r.resp.Count != 10 {
				t.Fatalf("produce answered %v, %v; want the first attempt's offsets [0, 10)", r.resp, r.err)
			}
			fr, err := nodes[0].Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "t", Offset: 0, MaxBytes: 1 << 20})
			if err != nil || fr.Code != partitionpb.Code_CODE_OK {
				t.Fatalf("fetch: %v %v", fr, err)
			}
			if fr.HighWaterMark != 10 || len(fr.Records) != 10 {
				t.Fatalf("the partition holds %d records (hwm %d) after one produce of 10", len(fr.Records), fr.HighWaterMark)
			}
		})
	}
}

// TestRequestLogForgetsOldAndExcessRequests: a written request is remembered for
// requestMemory, and at most maxRememberedPerPartition of them, the oldest going first; a
// failed one is not remembered, so its re-send is written.
func TestRequestLogForgetsOldAndExcessRequests(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newRequestLog(func() time.Time { return now })
	write := func(id uint64, resp *partitionpb.ProduceResponse) []*actor.PID {
		if w, ok, _ := l.resent(id, 1, nil); ok {
			t.Fatalf("request %d is new, but taken for a re-send (written %v)", id, w)
		}
		l.begin(id, 1)
		return l.settle(id, resp)
	}
	ok := func(base int64) *partitionpb.ProduceResponse {
		return &partitionpb.ProduceResponse{BaseOffset: base, Count: 1}
	}
	l.begin(1, 1)
	if w, ok, _ := l.resent(1, 1, nil); !ok || w != nil {
		t.Fatalf("a re-send of a request being written: written %v, re-send %v; want to wait", w, ok)
	}
	if waiting := l.settle(1, ok(7)); len(waiting) != 1 {
		t.Fatalf("%d re-senders to answer, want 1", len(waiting))
	}
	if w, ok, _ := l.resent(1, 1, nil); !ok || w == nil || w.base != 7 {
		t.Fatalf("a re-send of a written request: written %v, re-send %v; want base 7", w, ok)
	}
	write(2, &partitionpb.ProduceResponse{Code: partitionpb.Code_CODE_RESOURCE_EXHAUSTED})
	write(2, ok(8)) // refused: its re-send is written

	now = now.Add(requestMemory + time.Millisecond)
	for id := uint64(10); id < 10+maxRememberedPerPartition+5; id++ {
		write(id, ok(int64(id)))
	}
	if _, ok, _ := l.resent(1, 1, nil); ok {
		t.Fatalf("request 1 remembered after %s", requestMemory)
	}
	// Past the bound, requests older than resendWindow go (TestRequestLogKeepsWhatItsAgentMayResend).
	now = now.Add(resendWindow + time.Millisecond)
	write(1<<20, ok(1<<20))
	if _, ok, _ := l.resent(15, 1, nil); ok {
		t.Fatal("the oldest of more than maxRememberedPerPartition requests is remembered")
	}
	if w, _, _ := l.resent(16, 1, nil); w == nil || w.base != 16 {
		t.Fatalf("request 16, within the bound, is forgotten: %v", w)
	}
	if len(l.done) != maxRememberedPerPartition || len(l.order)-l.head != maxRememberedPerPartition {
		t.Fatalf("%d requests remembered (%d in order), want %d", len(l.done), len(l.order)-l.head, maxRememberedPerPartition)
	}
}

// TestRequestLogKeepsWhatItsAgentMayResend: past maxRememberedPerPartition requests, a
// partition still remembers those written within resendWindow, as its agent may re-send
// them, and forgets them after; past maxRecentRequests it forgets the oldest whatever
// their age. Before, a partition taking more than ~800 requests a second forgot a
// request before its agent's re-send, 5 s after the attempt, came: written twice.
func TestRequestLogKeepsWhatItsAgentMayResend(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newRequestLog(func() time.Time { return now })
	write := func(id uint64) {
		l.begin(id, 1)
		l.settle(id, &partitionpb.ProduceResponse{BaseOffset: int64(id), Count: 1})
	}
	for id := uint64(1); id <= 2*maxRememberedPerPartition; id++ {
		write(id)
	}
	now = now.Add(5 * time.Second)
	write(2*maxRememberedPerPartition + 1)
	if w, ok, _ := l.resent(1, 1, nil); !ok || w == nil || w.base != 1 {
		t.Fatalf("request 1, written 5 s ago with %d after it: re-send %v, written %v; want it known", 2*maxRememberedPerPartition, ok, w)
	}
	now = now.Add(resendWindow)
	write(2*maxRememberedPerPartition + 2)
	if _, ok, _ := l.resent(1, 1, nil); ok {
		t.Fatalf("request 1 remembered %v after it was written, with %d after it", 5*time.Second+resendWindow, 2*maxRememberedPerPartition+1)
	}
	if n := len(l.done); n != maxRememberedPerPartition {
		t.Fatalf("%d requests remembered past the window, want %d", n, maxRememberedPerPartition)
	}
	for id := uint64(3 * maxRememberedPerPartition); len(l.order)-l.head < maxRecentRequests; id++ {
		write(id)
	}
	write(1 << 40)
	if n := len(l.done); n != maxRecentRequests {
		t.Fatalf("%d requests remembered within the window, want at most %d", n, maxRecentRequests)
	}
}

// TestProduceInFlightAtGracefulLeaveIsWrittenOnce stops the owner of a partition while
// a request to it waits for the store. The owner answers the request before it leaves:
// had it left first, the client would have re-sent the request to the next owner while
// the leaving one still committed it, and the records would be in the log twice.
func TestProduceInFlightAtGracefulLeaveIsWrittenOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	store := &faultyStore{Store: f.store}
	f.store = store
	nodes := startNodesWith(t, f, 2, func(c *NodeConfig) {
		c.Client = ClientOptions{AttemptTimeout: 300 * time.Millisecond, RetryFor: 30 * time.Second}
	})
	p := coordination.Partition{Topic: "t", Partition: 0}
	if resp, err := nodes[0].Client().Produce(ctx, p, []*partitionpb.Record{{Value: []byte("first")}}); err != nil || resp.Code != partitionpb.Code_CODE_OK {
		t.Fatalf("produce: %v %v", resp, err)
	}
	owner, other := nodes[0], nodes[1]
	if _, ok := owner.current().local.snapshot()[p]; !ok {
		owner, other = other, owner
	}
	store.mu.Lock()
	hold, puts := make(chan struct{}), store.puts
	store.hold = hold
	store.mu.Unlock()

	got := produceAsync(other.Client(), p, tenRecords())
	store.waitPuts(t, puts+1)
	stopped := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		stopped <- owner.Stop(sctx)
	}()
	m := owner.current()
	harness.Eventually(t, 10*time.Second, func() error {
		if !m.deps.leaving.Load() {
			return errors.New("the owner has not started to leave")
		}
		return nil
	})
	close(hold) // the owner is leaving, its request held by the store
	r := <-got
	if err := <-stopped; err != nil {
		t.Fatalf("stop the owner: %v", err)
	}
	if r.err != nil || r.resp.Code != partitionpb.Code_CODE_OK || r.resp.BaseOffset != 1 || r.resp.Count != 10 {
		t.Fatalf("produce answered %v, %v; want offsets [1, 11)", r.resp, r.err)
	}
	var fr *partitionpb.FetchResponse
	harness.Eventually(t, 30*time.Second, func() error {
		var err error
		fr, err = other.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "t", Offset: 0, MaxBytes: 1 << 20})
		if err == nil && fr.Code != partitionpb.Code_CODE_OK {
			err = fmt.Errorf("%v: %s", fr.Code, fr.Message)
		}
		return err
	})
	if fr.HighWaterMark != 11 || len(fr.Records) != 11 {
		t.Fatalf("the partition holds %d records (hwm %d) after produces of 1 and 10", len(fr.Records), fr.HighWaterMark)
	}
}

type produceOutcome struct {
	resp *partitionpb.ProduceResponse
	err  error
}

// produceAsync sends recs to p through c and delivers the outcome on the channel.
func produceAsync(c *Client, p coordination.Partition, recs []*partitionpb.Record) <-chan produceOutcome {
	got := make(chan produceOutcome, 1)
	go func() {
		resp, err := c.Produce(context.Background(), p, recs)
		got <- produceOutcome{resp, err}
	}()
	return got
}

// tenRecords are ten records of about 1 KiB.
func tenRecords() []*partitionpb.Record {
	var recs []*partitionpb.Record
	for i := range 10 {
		recs = append(recs, &partitionpb.Record{Value: fmt.Appendf(nil, "%04d %0996d", i, i)})
	}
	return recs
}

// resentCount follows streamhouse_produce_resent_total of a topic from its value now.
type resentCount struct {
	topic string
	base  float64
}

func resentCounter(t *testing.T, topic string) resentCount {
	t.Helper()
	return resentCount{topic, testutil.ToFloat64(metricProduceResent.WithLabelValues(topic))}
}

// wait returns once n re-sent requests have reached a partition of the topic.
func (r resentCount) wait(t *testing.T, n float64) {
	t.Helper()
	harness.Eventually(t, 10*time.Second, func() error {
		if got := testutil.ToFloat64(metricProduceResent.WithLabelValues(r.topic)) - r.base; got < n {
			return fmt.Errorf("%v re-sent requests reached the partition, want %v", got, n)
		}
		return nil
	})
}

// TestRequestLogRestoresWhatEarlierOwnersWrote: a new owner remembers the requests its
// recent segments' index entries list, as of when they were written, for requestMemory
// however many requests it writes itself meanwhile; it skips a reference outside its
// segment and segments older than requestMemory. An id known with another number of
// records is refused, whether written or being written. The writer's clock may be
// ahead of this agent's or behind it: the segments' ages count from the newest.
func TestRequestLogRestoresWhatEarlierOwnersWrote(t *testing.T) {
	for _, skew := range []time.Duration{0, -90 * time.Second, 90 * time.Second} {
		t.Run(fmt.Sprintf("writer's clock %v off", skew), func(t *testing.T) { testRequestLogRestore(t, skew) })
	}
}

func testRequestLogRestore(t *testing.T, skew time.Duration) {
	now := time.Unix(1000, 0)
	l := newRequestLog(func() time.Time { return now })
	at := func(ago time.Duration) int64 { return now.Add(skew - ago).UnixMilli() }
	segs := []coordination.SegmentMeta{
		{Base: 0, Last: 9, WrittenMs: at(requestMemory + 2*time.Second), Requests: []coordination.RequestRef{{ID: 1, Base: 0, Count: 10}}},
		{Base: 10, Last: 19, WrittenMs: at(30 * time.Second), Requests: []coordination.RequestRef{
			{ID: 2, Base: 10, Count: 4}, {ID: 3, Base: 14, Count: 6}, {ID: 4, Base: 18, Count: 5}, {ID: 0, Base: 10, Count: 1}}},
		{Base: 20, Last: 20, WrittenMs: at(time.Second)}, // merged, or written before requests were listed
	}
	if n := l.restore(segs); n != 2 {
		t.Fatalf("%d requests restored, want 2 (ids 2 and 3)", n)
	}
	// This owner's own requests, more than it keeps of its own, push none of them out.
	for id := uint64(100); id < 100+maxRememberedPerPartition+10; id++ {
		l.begin(id, 1)
		l.settle(id, &partitionpb.ProduceResponse{BaseOffset: int64(id), Count: 1})
	}
	for id, w := range map[uint64]writtenRequest{2: {base: 10, count: 4}, 3: {base: 14, count: 6}} {
		if got, ok, err := l.resent(id, int(w.count), nil); !ok || err != nil || got == nil || got.base != w.base {
			t.Fatalf("request %d: written %v, re-send %v (%v); want base %d", id, got, ok, err, w.base)
		}
	}
	for _, id := range []uint64{1, 4} {
		if w, ok, _ := l.resent(id, 5, nil); ok {
			t.Fatalf("request %d restored (written %v)", id, w)
		}
	}
	if _, ok, err := l.resent(2, 3, nil); ok || !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("id 2 with 3 records (written with 4): re-send %v, %v; want ErrInvalidArgument", ok, err)
	}
	if _, ok, err := l.resent(99, 1, nil); ok || err != nil {
		t.Fatalf("an unknown id taken for a re-send: %v, %v", ok, err)
	}
	if w, ok, err := l.resent(100+maxRememberedPerPartition+9, 1, nil); !ok || err != nil || w == nil {
		t.Fatalf("this owner's last request not remembered: %v, %v, %v", w, ok, err)
	}
	l.begin(7, 2)
	if w, ok, err := l.resent(7, 2, nil); !ok || err != nil || w != nil {
		t.Fatalf("a re-send of a request being written: %v, %v, %v; want to wait", w, ok, err)
	}
	if _, ok, err := l.resent(7, 1, nil); ok || !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("id 7 with 1 record (being written with 2): re-send %v, %v; want ErrInvalidArgument", ok, err)
	}
	now = now.Add(requestMemory - 28*time.Second) // past a minute after they were written, counted from the newest segment
	if _, ok, _ := l.resent(2, 4, nil); ok {
		t.Fatal("a restored request is remembered past requestMemory from when it was written")
	}
	l.remember(9, 21, 1)
	if l.restored != nil {
		t.Fatalf("%d restored requests kept after every one was forgotten", len(l.restored))
	}
}

// Segments of two writers whose clocks disagree: an earlier owner's running 90 s ahead,
// the last owner's on time. The last owner's requests are remembered (counted from its
// own last segment), and so are the earlier owner's (younger-looking, they count as
// written with the last). Counting from the newest time instead, the last owner's looked
// 90 s old and were forgotten.
func TestRequestLogRestoresAcrossWritersWhoseClocksDisagree(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newRequestLog(func() time.Time { return now })
	segs := []coordination.SegmentMeta{
		{Base: 0, Last: 4, WrittenMs: now.Add(80 * time.Second).UnixMilli(), Requests: []coordination.RequestRef{{ID: 5, Base: 0, Count: 5}}},
		{Base: 5, Last: 9, WrittenMs: now.Add(-time.Second).UnixMilli(), Requests: []coordination.RequestRef{{ID: 6, Base: 5, Count: 5}}},
	}
	if n := l.restore(segs); n != 2 {
		t.Fatalf("%d requests restored, want both writers' 2", n)
	}
	for id, base := range map[uint64]int64{5: 0, 6: 5} {
		if w, ok, err := l.resent(id, 5, nil); !ok || err != nil || w == nil || w.base != base {
			t.Fatalf("request %d: %v, %v, %v; want written at %d", id, w, ok, err, base)
		}
	}
}
