package actors

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"google.golang.org/grpc"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// driver runs a writer on one goroutine, as the partition actor does.
type driver struct {
	w     *writer
	ops   chan func()
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	fatal error
}

func drive(t *testing.T, w *writer) *driver {
	d := &driver{w: w, ops: make(chan func()), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		for {
			select {
			case op := <-d.ops:
				op()
			case <-w.Signal():
				if err := w.Process(); err != nil {
					d.mu.Lock()
					d.fatal = err
					d.mu.Unlock()
				}
			case <-d.stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(d.stop); <-d.done })
	return d
}

// inspect runs fn on the writer's goroutine and returns its answer.
func (d *driver) inspect(fn func(*writer) bool) bool {
	res := make(chan bool, 1)
	d.ops <- func() { res <- fn(d.w) }
	return <-res
}

// produce appends recs and waits for the answer.
func (d *driver) produce(recs []segmentstore.Record) produceResult {
	res := make(chan produceResult, 1)
	d.ops <- func() { d.w.Append(recs, nil, 0, func(r produceResult) { res <- r }) }
	select {
	case r := <-res:
		return r
	case <-time.After(30 * time.Second):
		return produceResult{Err: errors.New("test: no answer from the writer in 30s")}
	}
}

func values(prefix string, n int) []segmentstore.Record {
	recs := make([]segmentstore.Record, n)
	for i := range recs {
		recs[i] = segmentstore.Record{Key: fmt.Appendf(nil, "k%d", i%7), Value: fmt.Appendf(nil, "%s-%d-%0200d", prefix, i, i)}
	}
	return recs
}

// committedLog reads every committed segment of a partition back from the store and
// checks that the segments tile [0, hwm) exactly.
func committedLog(t *testing.T, f *fixture, topic string, partition int32) []segmentstore.Record {
	t.Helper()
	ctx := context.Background()
	segs, hwm, err := f.c.Segments(ctx, topic, partition, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []segmentstore.Record
	for _, s := range segs {
		if s.Base != int64(len(out)) {
			t.Fatalf("segment [%d, %d] follows offset %d", s.Base, s.Last, len(out)-1)
		}
		obj, err := f.store.Get(ctx, s.Object)
		if err != nil {
			t.Fatalf("committed segment %s: %v", s.Object, err)
		}
		if s.Offset < 0 || s.Offset+s.ZBytes > int64(len(obj)) {
			t.Fatalf("segment %+v lies outside its %d-byte object", s, len(obj))
		}
		data := obj[s.Offset : s.Offset+s.ZBytes]
		seg, err := segmentstore.Decode(data)
		if err != nil {
			t.Fatalf("committed segment %s: %v", s.Object, err)
		}
		if int64(len(seg.Records)) != s.Records || seg.Header.LastOffset != s.Last || int64(len(data)) != s.ZBytes {
			t.Fatalf("segment %s does not match its index entry %+v", s.Object, s)
		}
		out = append(out, seg.Records...)
	}
	if int64(len(out)) != hwm {
		t.Fatalf("segments hold %d records, hwm is %d", len(out), hwm)
	}
	return out
}

func TestWriterAcksExactlyWhatItCommits(t *testing.T) {
	f := newFixture(t)
	w := newWriter(writerConfig{Lease: f.lease(t, "t", 1, 0), Store: f.store, Linger: 2 * time.Millisecond, SegmentBytes: 16 << 10}, 0)
	d := drive(t, w)

	const producers, requests = 16, 40
	type ack struct {
		sent []segmentstore.Record
		res  produceResult
	}
	acks := make(chan ack, producers*requests)
	var wg sync.WaitGroup
	for g := range producers {
		wg.Go(func() {
			for r := range requests {
				recs := values(fmt.Sprintf("p%d-r%d", g, r), 1+(g+r)%5)
				sent := append([]segmentstore.Record(nil), recs...)
				acks <- ack{sent, d.produce(recs)}
			}
		})
	}
	wg.Wait()
	close(acks)
	log := committedLog(t, f, "t", 0)
	seen := make([]bool, len(log))
	for a := range acks {
		if a.res.Err != nil {
			t.Fatalf("produce failed: %v", a.res.Err)
		}
		if a.res.Count != len(a.sent) {
			t.Fatalf("ack of %d records for %d sent", a.res.Count, len(a.sent))
		}
		for i, rec := range a.sent {
			off := a.res.Base + int64(i)
			if off >= int64(len(log)) || seen[off] {
				t.Fatalf("offset %d acked twice or past the log end %d", off, len(log))
			}
			seen[off] = true
			got := log[off]
			if got.Offset != off || !reflect.DeepEqual(got.Value, rec.Value) || !reflect.DeepEqual(got.Key, rec.Key) || got.Timestamp == 0 {
				t.Fatalf("offset %d holds %q, the ack says %q", off, got.Value, rec.Value)
			}
		}
	}
	for off, ok := range seen {
		if !ok {
			t.Fatalf("offset %d is committed but was never acked", off)
		}
	}
	segs, _, _ := f.c.Segments(context.Background(), "t", 0, 0, 0)
	t.Logf("%d records from %d requests in %d segments", len(log), producers*requests, len(segs))
	if len(segs) < 2 {
		t.Fatal("expected several segments: sealing by size or linger never happened")
	}
}

func TestWriterRecoversFromFailedUpload(t *testing.T) {
	f := newFixture(t)
	store := &faultyStore{Store: f.store, failPuts: map[int]bool{3: true, 4: true, 9: true}}
	w := newWriter(writerConfig{Lease: f.lease(t, "t", 1, 0), Store: store, Linger: time.Millisecond, SegmentBytes: 1 << 10}, 0)
	d := drive(t, w)

	var acked []segmentstore.Record
	failed := 0
	for r := range 30 {
		recs := values(fmt.Sprintf("r%d", r), 3)
		sent := append([]segmentstore.Record(nil), recs...)
		res := d.produce(recs)
		switch {
		case errors.Is(res.Err, ErrUnavailable):
			failed++
			continue
		case res.Err != nil:
			t.Fatal(res.Err)
		}
		if res.Base != int64(len(acked)) {
			t.Fatalf("ack at %d, but the log so far ends at %d: a failed upload left a gap", res.Base, len(acked))
		}
		acked = append(acked, sent...)
	}
	if failed == 0 {
		t.Fatal("no request failed: the injected upload failures did not reach producers")
	}
	log := committedLog(t, f, "t", 0)
	if len(log) != len(acked) {
		t.Fatalf("log holds %d records, %d acked", len(log), len(acked))
	}
	for i := range log {
		if !reflect.DeepEqual(log[i].Value, acked[i].Value) {
			t.Fatalf("offset %d holds %q, acked %q", i, log[i].Value, acked[i].Value)
		}
	}
	t.Logf("%d requests failed retriably, %d records acked and committed without a gap", failed, len(acked))
}

func TestWriterStopsWhenFenced(t *testing.T) {
	f := newFixture(t)
	l := f.lease(t, "t", 1, 0)
	w := newWriter(writerConfig{Lease: l, Store: f.store, Linger: time.Millisecond}, 0)
	d := drive(t, w)
	if res := d.produce(values("before", 5)); res.Err != nil {
		t.Fatal(res.Err)
	}
	// The owner pauses past its TTL; another node takes the partition and writes.
	if _, err := f.c.Etcd().Revoke(context.Background(), l.Session().LeaseID()); err != nil {
		t.Fatal(err)
	}
	other := f.lease(t, "t", 1, 0)
	if _, err := other.Commit(context.Background(), coordination.SegmentMeta{Object: "x", Base: 5, Last: 5, Records: 1}); err != nil {
		t.Fatal(err)
	}
	res := d.produce(values("after", 5))
	if !errors.Is(res.Err, coordination.ErrFenced) || !errors.Is(res.Err, ErrUnavailable) {
		t.Fatalf("produce after losing the lease: %v, want unavailable (fenced)", res.Err)
	}
	if res := d.produce(values("later", 1)); res.Err == nil {
		t.Fatal("a fenced writer accepted a later request")
	}
	d.mu.Lock()
	fatal := d.fatal
	d.mu.Unlock()
	if !errors.Is(fatal, coordination.ErrFenced) {
		t.Fatalf("Process returned %v, want the fence as fatal", fatal)
	}
	segs, hwm, err := f.c.Segments(context.Background(), "t", 0, 0, 0)
	if err != nil || hwm != 6 || len(segs) != 2 || segs[1].Object != "x" {
		t.Fatalf("the fenced writer changed the log: %+v hwm %d %v", segs, hwm, err)
	}
}

func TestWriterFlushCommitsTheOpenBatch(t *testing.T) {
	f := newFixture(t)
	w := newWriter(writerConfig{Lease: f.lease(t, "t", 1, 0), Store: f.store, Linger: time.Hour}, 0)
	results := make(chan produceResult, 3)
	for i := range 3 {
		w.Append(values(fmt.Sprint(i), 2), nil, 0, func(r produceResult) { results <- r })
	}
	if len(results) != 0 {
		t.Fatal("acked before any commit")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r := <-results; r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if w.Committed() != 6 || len(committedLog(t, f, "t", 0)) != 6 {
		t.Fatalf("committed %d", w.Committed())
	}
}

// TestWriterCommitsManyProducersWithinATransaction: batches of more idempotent producers
// than one commit can store states for (Lease.MaxProducerChanges) go into several
// segments, each committed within etcd's limit of operations a transaction (its
// default, 128), and the next owner loads every producer's state.
func TestWriterCommitsManyProducersWithinATransaction(t *testing.T) {
	f := newFixture(t)
	lease := f.lease(t, "t", 1, 0)
	w := newWriter(writerConfig{Lease: lease, Store: f.store, Linger: time.Hour}, 0)
	producers := int64(2*lease.MaxProducerChanges() + 10)
	results := make(chan produceResult, producers)
	for id := int64(1); id <= producers; id++ {
		w.Append(values(fmt.Sprint(id), 1), &idempotence{id: id, firstSeq: 0}, 0, func(r produceResult) { results <- r })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Two segments were sealed as they filled, the third waits for its linger: flush
	// it, then wait for the first two, which the writer's background work commits.
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for answered := int64(0); answered < producers; {
		select {
		case r := <-results:
			answered++
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no answer in 30s")
		case <-w.Signal():
			if err := w.Process(); err != nil {
				t.Fatal(err)
			}
		}
	}
	segs, _, err := f.c.Segments(ctx, "t", 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 3 {
		t.Fatalf("%d segments for %d producers' batches, want 3", len(segs), producers)
	}
	states, err := lease.Producers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(states)) != producers {
		t.Fatalf("%d producer states stored, want %d", len(states), producers)
	}
	for id, st := range states {
		if st.Base != id-1 || st.FirstSeq != 0 || st.LastSeq != 0 {
			t.Fatalf("producer %d: %+v, want its batch at offset %d", id, st, id-1)
		}
	}
}

// twoWritersOnOneBudget starts writers of partitions 0 and 1 of topic t sharing pending,
// on a store whose PUTs wait until hold is closed.
func twoWritersOnOneBudget(t *testing.T, pending *budget) (a, b *driver, store *faultyStore, hold chan struct{}) {
	t.Helper()
	f := newFixture(t)
	hold = make(chan struct{})
	store = &faultyStore{Store: f.store, hold: hold}
	cfg := writerConfig{Store: store, Linger: time.Millisecond, Pending: pending}
	cfg.Lease = f.lease(t, "t", 2, 0)
	a = drive(t, newWriter(cfg, 0))
	cfg.Lease = f.lease(t, "t", 2, 1)
	b = drive(t, newWriter(cfg, 0))
	return a, b, store, hold
}

// The pending budget is the agent's: a partition is refused with ErrBackpressure
// (ResourceExhausted to clients) while another holds the budget, memory does not grow with
// the refused requests, and every byte is given back once the backlog clears.
func TestWriterBackpressure(t *testing.T) {
	pending := newBudget(4 << 10)
	a, b, store, hold := twoWritersOnOneBudget(t, pending)
	first := make(chan produceResult, 1)
	go func() { first <- a.produce(values("a", 10)) }() // ~2 KiB, held in the upload
	store.waitPuts(t, 1)                                // the first batch is held in its upload
	held := pending.used.Load()
	var recBytes int64
	for _, r := range values("a", 10) {
		recBytes += int64(r.Size())
	}
	// Its records and its segment, waiting for the store, both count.
	if held <= recBytes {
		t.Fatalf("%d bytes counted while a batch of %d record bytes is in its PUT: its segment does not count", held, recBytes)
	}
	for range 50 {
		if res := b.produce(values("b", 20)); !errors.Is(res.Err, ErrBackpressure) || codeOf(res.Err) != partitionpb.Code_CODE_RESOURCE_EXHAUSTED {
			t.Fatalf("produce on another partition over the agent's budget: %v, want ErrBackpressure", res.Err)
		}
	}
	if used := pending.used.Load(); used != held {
		t.Fatalf("50 refused requests moved the budget from %d to %d bytes", held, used)
	}
	close(hold)
	if res := <-first; res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := b.produce(values("c", 20)); res.Err != nil {
		t.Fatalf("produce after the backlog cleared: %v", res.Err)
	}
	if used := pending.used.Load(); used != 0 {
		t.Fatalf("%d bytes still counted pending after every request was answered", used)
	}
}

// Records of no bytes count in the pending budget too (recordOverhead each, and
// segmentstore.HeaderOverhead a header): a request of 1000 empty records, or of a record of 1000 empty
// headers, is refused while another holds the budget. Before, they counted nothing, and
// requests of them were taken without bound.
func TestWriterCountsEmptyRecords(t *testing.T) {
	headers := make([]segmentstore.RecordHeader, 1000)
	for name, c := range map[string]struct {
		recs []segmentstore.Record
		min  int64
	}{
		"1000 empty records":             {make([]segmentstore.Record, 1000), 1000 * recordOverhead},
		"a record of 1000 empty headers": {[]segmentstore.Record{{Headers: headers}}, 1000 * segmentstore.HeaderOverhead},
	} {
		t.Run(name, func(t *testing.T) {
			pending := newBudget(64 << 10)
			a, b, store, hold := twoWritersOnOneBudget(t, pending)
			first := make(chan produceResult, 1)
			go func() { first <- a.produce(c.recs) }()
			store.waitPuts(t, 1) // held in its upload
			if used := pending.used.Load(); used < c.min {
				t.Fatalf("%s hold %d bytes of the budget, want at least %d", name, used, c.min)
			}
			if res := b.produce(c.recs); !errors.Is(res.Err, ErrBackpressure) {
				t.Fatalf("%s more over the budget: %v, want ErrBackpressure", name, res.Err)
			}
			close(hold)
			if res := <-first; res.Err != nil {
				t.Fatal(res.Err)
			}
			if res := b.produce(c.recs); res.Err != nil {
				t.Fatalf("%s after the backlog cleared: %v", name, res.Err)
			}
			if used := pending.used.Load(); used != 0 {
				t.Fatalf("%d bytes still counted pending after every request was answered", used)
			}
		})
	}
}

// A committed batch lives on only in the recent cache: once the cache drops it, nothing
// of the writer keeps its records or its segment (the slots its queue left behind held
// ~150 MiB at 100 partitions: docs/BENCHMARKS.md, profiling item 20).
func TestWriterKeepsNoBatchTheRecentCacheDropped(t *testing.T) {
	f := newFixture(t)
	hold := make(chan struct{})
	const batches = 4
	w := newWriter(writerConfig{Lease: f.lease(t, "t", 1, 0), Store: &faultyStore{Store: f.store, hold: hold},
		Linger: time.Hour, SegmentBytes: 1 << 10, MaxInFlight: batches, Recent: newRecentCache(1)}, 0)
	d := drive(t, w)
	results := make(chan produceResult, batches)
	for i := range batches {
		go func() { results <- d.produce(values(fmt.Sprint("b", i), 8)) }() // ~1.7 KiB: a batch each
	}
	// Every batch sealed and held in its upload: the queue holds them all.
	var kept []weak.Pointer[byte]
	harness.Eventually(t, 10*time.Second, func() error {
		if !d.inspect(func(w *writer) bool { return len(w.queue) == batches && w.open == nil }) {
			return errors.New("the batches are not all queued yet")
		}
		return nil
	})
	d.inspect(func(w *writer) bool {
		for _, b := range w.queue {
			kept = append(kept, weak.Make(&b.records[0].Value[0]))
		}
		return true
	})
	close(hold)
	for range batches {
		if res := <-results; res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	runtime.GC()
	alive := 0
	for _, p := range kept {
		if p.Value() != nil {
			alive++
		}
	}
	if alive > 0 {
		t.Fatalf("%d of %d committed batches still reachable after the recent cache dropped them", alive, batches)
	}
}

// Recent logs of several partitions share one cache: together they never hold more than
// its limit, a quiet partition's batches go before a busy one's newer ones, and a stopped
// partition gives everything back.
func TestRecentLogsShareTheCache(t *testing.T) {
	cache := newRecentCache(10 * (1000 + recordOverhead)) // ten batches of one record
	logs := make([]recentLog, 4)
	for i := range logs {
		logs[i].cache = cache
	}
	add := func(l *recentLog, base int64) {
		l.add(&batch{base: base, records: []segmentstore.Record{{Offset: base}}, bytes: 1000})
		total := int64(0)
		for i := range logs {
			total += logs[i].bytes
		}
		if total != cache.bytes() || total > cache.limit {
			t.Fatalf("logs hold %d bytes, the cache counts %d of %d", total, cache.bytes(), cache.limit)
		}
	}
	for n := range int64(8) {
		add(&logs[0], n) // partition 0 was busy, then went quiet
	}
	for n := range int64(8) {
		add(&logs[1], n)
	}
	if len(logs[0].batches) != 2 || logs[0].batches[0].base != 6 || len(logs[1].batches) != 8 {
		t.Fatalf("partition 0 keeps %d batches, partition 1 %d: the oldest should have gone first", len(logs[0].batches), len(logs[1].batches))
	}
	if _, ok := logs[0].read(0, 1<<20); ok {
		t.Fatal("an evicted offset was served from memory")
	}
	for n := range int64(3000) {
		add(&logs[2+n%2], n/2)
		if n%500 == 0 {
			logs[3].clear() // a partition that stops and comes back
		}
	}
	for i := range logs {
		logs[i].clear()
	}
	if cache.bytes() != 0 {
		t.Fatalf("%d bytes counted after every log was cleared", cache.bytes())
	}
	if len(cache.fifo) > 2*1024+10 {
		t.Fatalf("the cache keeps %d entries for nothing", len(cache.fifo))
	}
}

func TestRecentLogReads(t *testing.T) {
	r := recentLog{cache: newRecentCache(1 << 20)}
	for base := int64(100); base < 130; base += 10 {
		b := &batch{base: base}
		for o := base; o < base+10; o++ {
			b.records = append(b.records, segmentstore.Record{Offset: o, Value: make([]byte, 100)})
		}
		b.bytes = 1000
		r.add(b)
	}
	if _, ok := r.read(99, 1<<20); ok {
		t.Fatal("read before the recent log served from memory")
	}
	got, ok := r.read(105, 1<<20)
	if !ok || len(got) != 25 || got[0].Offset != 105 || got[24].Offset != 129 {
		t.Fatalf("read from 105: %d records, ok %v", len(got), ok)
	}
	if got, _ := r.read(105, 250); len(got) != 2 {
		t.Fatalf("read 250 bytes of 100-byte records: %d records, want 2", len(got))
	}
	if got, ok := r.read(130, 1<<20); !ok || len(got) != 0 {
		t.Fatalf("read at the log end: %d, %v", len(got), ok)
	}
	small := recentLog{cache: newRecentCache(r.batches[0].memBytes() * 3 / 2)}
	for _, b := range r.batches {
		small.add(b)
	}
	if len(small.batches) != 1 || small.batches[0].base != 120 {
		t.Fatalf("a recent log of one and a half batches keeps %d batches", len(small.batches))
	}
}

// While every upload slot is busy, records whose linger has passed join one growing batch
// instead of a queue of tiny segments; they are all acked once it commits.
func TestWriterGrowsBatchesWhileUploadsAreBusy(t *testing.T) {
	f := newFixture(t)
	store := &faultyStore{Store: f.store, hold: make(chan struct{})}
	w := newWriter(writerConfig{Lease: f.lease(t, "t", 1, 0), Store: store, Linger: time.Millisecond, MaxInFlight: 1}, 0)
	d := drive(t, w)
	send := func(recs []segmentstore.Record) <-chan produceResult {
		res := make(chan produceResult, 1)
		d.ops <- func() { d.w.Append(recs, nil, 0, func(r produceResult) { res <- r }) }
		return res
	}
	first := send(values("first", 1))
	store.waitPuts(t, 1) // sealed by its linger; its upload holds the only slot
	var later []<-chan produceResult
	for i := range 5 {
		later = append(later, send(values(fmt.Sprintf("later%d", i), 1)))
		// The linger of the batch it joins has passed while the slot is busy.
		harness.Eventually(t, 10*time.Second, func() error {
			if !d.inspect(func(w *writer) bool { return w.sealDue && w.open != nil && len(w.open.records) == i+1 }) {
				return errors.New("the open batch is not yet due to seal")
			}
			return nil
		})
	}
	close(store.hold)
	for i, ch := range append([]<-chan produceResult{first}, later...) {
		select {
		case r := <-ch:
			if r.Err != nil || r.Base != int64(i) {
				t.Fatalf("request %d: %+v", i, r)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("request %d not answered", i)
		}
	}
	segs, _, err := f.c.Segments(context.Background(), "t", 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 2 || segs[0].Records != 1 || segs[1].Records != 5 {
		t.Fatalf("segments %+v: want the first record alone and the five that waited for its upload together", segs)
	}
	committedLog(t, f, "t", 0)
}

// Segments of several partitions that wait for the agent's only PUT slot share the next
// object, each at its own offset, and each partition's log reads back from it.
func TestFlusherSharesObjectsAcrossPartitions(t *testing.T) {
	f := newFixture(t)
	store := &faultyStore{Store: f.store, hold: make(chan struct{})}
	fl := newFlusher(store, "agent-1", 1, 0)
	var drivers []*driver
	for p := range int32(4) {
		w := newWriter(writerConfig{Lease: f.lease(t, "t", 4, p), Store: store, Flusher: fl, Linger: time.Millisecond}, 0)
		drivers = append(drivers, drive(t, w))
	}
	send := func(d *driver, recs []segmentstore.Record) <-chan produceResult {
		res := make(chan produceResult, 1)
		d.ops <- func() { d.w.Append(recs, nil, 0, func(r produceResult) { res <- r }) }
		return res
	}
	answers := []<-chan produceResult{send(drivers[0], values("p0", 3))}
	store.waitPuts(t, 1) // partition 0's segment holds the only slot
	for p := 1; p < 4; p++ {
		answers = append(answers, send(drivers[p], values(fmt.Sprintf("p%d", p), 3)))
	}
	harness.Eventually(t, 10*time.Second, func() error { // their segments wait together
		fl.mu.Lock()
		defer fl.mu.Unlock()
		if len(fl.pending) != 3 {
			return fmt.Errorf("%d segments wait for the slot", len(fl.pending))
		}
		return nil
	})
	close(store.hold)
	for p, ch := range answers {
		select {
		case r := <-ch:
			if r.Err != nil || r.Base != 0 || r.Count != 3 {
				t.Fatalf("partition %d: %+v", p, r)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("partition %d not answered", p)
		}
	}
	var metas []coordination.SegmentMeta
	for p := range int32(4) {
		segs, _, err := f.c.Segments(context.Background(), "t", p, 0, 0)
		if err != nil || len(segs) != 1 {
			t.Fatalf("partition %d: %v %v", p, segs, err)
		}
		metas = append(metas, segs[0])
		if got := committedLog(t, f, "t", p); len(got) != 3 || !strings.HasPrefix(string(got[0].Value), fmt.Sprintf("p%d-", p)) {
			t.Fatalf("partition %d reads back %d records", p, len(got))
		}
	}
	if metas[0].Object == metas[1].Object {
		t.Fatalf("partition 0's segment, written alone, shares object %s", metas[0].Object)
	}
	offsets := map[int64]bool{}
	for _, m := range metas[1:] {
		if m.Object != metas[1].Object || offsets[m.Offset] {
			t.Fatalf("segments %+v: want partitions 1-3 in one object at distinct offsets", metas[1:])
		}
		offsets[m.Offset] = true
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if store.puts != 2 {
		t.Fatalf("%d PUTs for 4 partitions' segments, want 2", store.puts)
	}
}

func TestFlusherOverlapsOnlyASlowPut(t *testing.T) {
	f := newFixture(t)
	store := &faultyStore{Store: f.store, hold: make(chan struct{})}
	timed := &timedStore{faultyStore: store, started: make(chan time.Time, 4)}
	fl := newFlusher(timed, "agent-1", 2, 0)
	fl.overlap = time.Second // well beyond the test's own delays
	type landed struct {
		object string
		err    error
	}
	results := make(chan landed, 4)
	submit := func(s string) {
		fl.submit([]byte(s), func(object string, _ int64, err error) { results <- landed{object, err} })
	}
	t0 := time.Now() // no later than the flusher's own start of the first PUT
	submit("first")
	first := <-timed.started
	submit("second")
	// A slot is free, but the first PUT has not run fl.overlap yet: the second segment
	// waits for it, to share the next object with what comes meanwhile...
	if since := time.Since(first); since >= fl.overlap {
		t.Fatalf("the test took %v to submit the second segment", since)
	}
	// ...until the first PUT has run fl.overlap: it is slow, and the second goes ahead in
	// a PUT of its own.
	var second time.Time
	select {
	case second = <-timed.started:
	case <-time.After(30 * time.Second):
		t.Fatal("no second PUT while the first is held")
	}
	if waited := second.Sub(t0); waited < fl.overlap {
		t.Fatalf("second PUT started %v after the first, before the overlap (%v)", waited, fl.overlap)
	}
	submit("third")
	submit("fourth")
	fl.mu.Lock()
	waiting := len(fl.pending)
	fl.mu.Unlock()
	if waiting != 2 {
		t.Fatalf("%d segments wait while both slots are busy, want 2", waiting)
	}
	close(store.hold)
	objects := map[string]int{}
	for range 4 {
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatal(r.err)
			}
			objects[r.object]++
		case <-time.After(30 * time.Second):
			t.Fatal("a segment was not written")
		}
	}
	// first, second, then third and fourth together once a slot was free.
	if len(objects) != 3 {
		t.Fatalf("4 segments in objects %v, want 3 objects", objects)
	}
}

// Segments that already make a large object go out in the free slot at once, without
// waiting for the PUT in flight to run the overlap: at high rates both slots stay busy.
func TestFlusherOverlapsAHeavyObjectAtOnce(t *testing.T) {
	f := newFixture(t)
	store := &faultyStore{Store: f.store, hold: make(chan struct{})}
	timed := &timedStore{faultyStore: store, started: make(chan time.Time, 4)}
	// An upload timeout beyond the test's own waits: the held first PUT must not end
	// (and free its slot) before the second is seen to start.
	fl := newFlusher(timed, "agent-1", 2, time.Hour)
	fl.overlap = time.Hour // never reached: only the bytes can start the second PUT
	fl.overlapBytes = 10
	results := make(chan error, 3)
	submit := func(s string) {
		fl.submit([]byte(s), func(_ string, _ int64, err error) { results <- err })
	}
	submit("first")
	<-timed.started
	submit("light") // 5 bytes: waits for the overlap
	fl.mu.Lock()
	waiting := len(fl.pending)
	fl.mu.Unlock()
	if waiting != 1 {
		t.Fatalf("%d segments wait after a light one, want 1", waiting)
	}
	submit("heavier") // 12 bytes waiting: over overlapBytes, a PUT of both starts now
	select {
	case <-timed.started:
	case <-time.After(30 * time.Second):
		t.Fatal("no second PUT while the waiting segments outweigh overlapBytes")
	}
	fl.mu.Lock()
	waiting, weight := len(fl.pending), fl.pendingBytes
	fl.mu.Unlock()
	if waiting != 0 || weight != 0 {
		t.Fatalf("%d segments of %d bytes still wait, want none", waiting, weight)
	}
	close(store.hold)
	for range 3 {
		select {
		case err := <-results:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a segment was not written")
		}
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if store.puts != 2 {
		t.Fatalf("%d PUTs, want 2: the first, then light and heavier together", store.puts)
	}
}

// timedStore tells when each Put reached it.
type timedStore struct {
	*faultyStore
	started chan time.Time
}

func (s *timedStore) Put(ctx context.Context, key string, parts ...[]byte) error {
	s.started <- time.Now()
	return s.faultyStore.Put(ctx, key, parts...)
}

func TestGoroutinesRunEveryFunctionConcurrently(t *testing.T) {
	// A function that blocks does not keep the next from running: Go never waits for a
	// goroutine to come free.
	block := make(chan struct{})
	started := make(chan int, 100)
	handed := make(chan struct{})
	go func() {
		for i := range 100 {
			goroutines.Go(func() { started <- i; <-block })
		}
		close(handed)
	}()
	select {
	case <-handed:
	case <-time.After(10 * time.Second):
		t.Fatal("Go waited for a goroutine to come free")
	}
	seen := map[int]bool{}
	for range 100 {
		select {
		case i := <-started:
			seen[i] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 100 blocking functions started", len(seen))
		}
	}
	close(block)
	// And functions still run once those have returned.
	done := make(chan struct{})
	goroutines.Go(func() { close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("function not run")
	}
}

// heldTxns holds the etcd transactions of a client that dials with its interceptor while
// armed: the way a slow etcd would, which still applies each one once let through.
type heldTxns struct {
	hold atomic.Pointer[chan struct{}]
	held atomic.Int64 // transactions that reached the hold
}

func (h *heldTxns) interceptor() grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if hold := h.hold.Load(); hold != nil && method == "/etcdserverpb.KV/Txn" {
			h.held.Add(1)
			<-*hold // not ctx: the transaction goes through late, as a slow etcd's would
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	})
}

// TestWriterFlushWaitsForTheCommitUnderWay: a writer flushing as its partition stops runs
// out of time while a commit's transaction is held in a slow etcd. The batches not yet
// committing fail, but the producers of the one committing are answered with what became
// of its transaction, which etcd applies once let through: told it failed, they would
// write its records again. Before, they were told the partition was unavailable, and the
// writer panicked on the commit's result when its actor processed it afterwards.
func TestWriterFlushWaitsForTheCommitUnderWay(t *testing.T) {
	var txns heldTxns
	f := newFixture(t, txns.interceptor())
	w := newWriter(writerConfig{Lease: f.lease(t, "t", 1, 0), Store: f.store, Linger: time.Hour, MaxInFlight: 1}, 0)
	hold := make(chan struct{})
	txns.hold.Store(&hold)
	first, second := make(chan produceResult, 1), make(chan produceResult, 1)
	w.Append(values("first", 3), nil, 0, func(r produceResult) { first <- r })
	w.seal(true) // uploads, then commits while the second batch waits in the open one
	w.Append(values("second", 2), nil, 0, func(r produceResult) { second <- r })
	deadline := time.After(10 * time.Second)
	for txns.held.Load() == 0 {
		select {
		case <-w.Signal():
			if err := w.Process(); err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Millisecond): // the commit runs on a goroutine of its own
		case <-deadline:
			t.Fatal("the first batch's commit never reached etcd")
		}
	}
	// etcd comes back once the flush ran out of time: when it failed the batch not yet
	// committing.
	failed := make(chan produceResult, 1)
	go func() { r := <-second; failed <- r; close(hold) }()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := w.Flush(ctx)
	harness.Eventually(t, 10*time.Second, func() error { // etcd applies the held transaction
		if got := committedLog(t, f, "t", 0); len(got) != 3 || !strings.HasPrefix(string(got[0].Value), "first-0-") {
			return fmt.Errorf("the log holds %d records, want the first batch's 3", len(got))
		}
		return nil
	})
	if r := <-first; r.Err != nil || r.Base != 0 || r.Count != 3 {
		t.Fatalf("the batch whose commit was under way, and is in the log: %+v, want acked at 0-2", r)
	}
	if r := <-failed; !errors.Is(r.Err, ErrUnavailable) {
		t.Fatalf("the batch not yet committing: %+v, want unavailable", r)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Flush out of time: %v, want unavailable", err)
	}
	_ = w.Process() // a late result must not move a stopped writer
	if w.Committed() != 3 || w.pending != 0 {
		t.Fatalf("committed %d with %d bytes pending, want 3 and 0", w.Committed(), w.pending)
	}
}

// A segment's index entry lists the requests whose records it holds, by their ids, so
// that a partition's next owner knows them. A batch is sealed at maxSegmentRequests of
// them, so that an entry stays small and still lists every one.
func TestWriterListsASegmentsRequests(t *testing.T) {
	f := newFixture(t)
	w := newWriter(writerConfig{Lease: f.lease(t, "t", 1, 0), Store: f.store, Linger: time.Hour}, 0)
	n := maxSegmentRequests + 10
	type acked struct {
		id uint64
		produceResult
	}
	results := make(chan acked, n+1)
	w.Append(values("anonymous", 1), nil, 0, func(r produceResult) { results <- acked{0, r} })
	for i := range n {
		id := uint64(1000 + i)
		w.Append(values(fmt.Sprint(i), 1+i%2), nil, id, func(r produceResult) { results <- acked{id, r} })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	bases := map[uint64]int64{}
	for range n + 1 {
		r := <-results
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		bases[r.id] = r.Base
	}
	segs, _, err := f.c.Segments(ctx, "t", 0, 0, 0)
	if err != nil || len(segs) != 2 {
		t.Fatalf("%d segments, %v; want two", len(segs), err)
	}
	var refs []coordination.RequestRef
	for i, seg := range segs {
		if want := []int{maxSegmentRequests, n - maxSegmentRequests}[i]; len(seg.Requests) != want {
			t.Fatalf("segment %d lists %d requests, want %d", i, len(seg.Requests), want)
		}
		refs = append(refs, seg.Requests...)
	}
	if len(refs) != n || refs[0].ID != 1000 || refs[n-1].ID != uint64(1000+n-1) {
		t.Fatalf("%d requests listed, from %v to %v; want all %d", len(refs), refs[0], refs[len(refs)-1], n)
	}
	for _, r := range refs {
		if r.Base != bases[r.ID] || int(r.Count) != 1+int(r.ID-1000)%2 {
			t.Fatalf("request %v, acked at base %d with %d records", r, bases[r.ID], 1+int(r.ID-1000)%2)
		}
	}
}

// A linger cut short applies to the batch already waiting: its records are written when
// the new linger has passed since it opened, not the old one.
func TestShorterLingerAppliesToTheOpenBatch(t *testing.T) {
	f := newFixture(t)
	w := newWriter(writerConfig{Lease: f.lease(t, "t", 1, 0), Store: f.store, Linger: time.Hour}, 0)
	d := drive(t, w)
	res := make(chan produceResult, 1)
	d.ops <- func() { w.Append(values("waiting", 1), nil, 0, func(r produceResult) { res <- r }) }
	start := time.Now()
	d.ops <- func() { w.setLinger(5 * time.Millisecond) }
	select {
	case r := <-res:
		if r.Err != nil || r.Base != 0 {
			t.Fatalf("produce: %+v", r)
		}
		t.Logf("written %v after the linger was cut", time.Since(start).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("the record waits for the old linger of an hour")
	}
}
