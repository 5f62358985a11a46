package actors

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// reader reads a partition from its log start to its end again and again while merges
// and retention rewrite its index, and fails on any gap, duplicate or changed record.
type reader struct {
	node   *Node
	p      coordination.Partition
	mu     sync.Mutex
	seen   map[int64]string // offset -> value, as first read
	passes int
	from   int64 // where the last pass began reading: 0 or the log start it was sent to
	bad    []string
}

func (r *reader) pass(ctx context.Context) {
	offset := int64(0)
	r.began(offset)
	for ctx.Err() == nil {
		resp, err := r.node.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: r.p.Topic, Partition: r.p.Partition, Offset: offset, MaxBytes: 4096})
		if err != nil || resp.Code == partitionpb.Code_CODE_UNAVAILABLE {
			return // try again next pass
		}
		if resp.Code == partitionpb.Code_CODE_OUT_OF_RANGE {
			if offset >= resp.LogStartOffset {
				r.fail("offset %d out of range with log start %d, hwm %d: %s", offset, resp.LogStartOffset, resp.HighWaterMark, resp.Message)
				return
			}
			offset = resp.LogStartOffset // retention went past us
			r.began(offset)
			continue
		}
		if resp.Code != partitionpb.Code_CODE_OK {
			r.fail("fetch at %d: %v %s", offset, resp.Code, resp.Message)
			return
		}
		if len(resp.Records) == 0 {
			r.mu.Lock()
			r.passes++
			r.mu.Unlock()
			return // the log end
		}
		for _, rec := range resp.Records {
			if rec.Offset != offset {
				r.fail("expected offset %d, read %d (a gap or a duplicate)", offset, rec.Offset)
				return
			}
			r.mu.Lock()
			if v, ok := r.seen[offset]; ok && v != string(rec.Value) {
				r.bad = append(r.bad, fmt.Sprintf("offset %d changed from %q to %q", offset, v, rec.Value))
			}
			r.seen[offset] = string(rec.Value)
			r.mu.Unlock()
			offset++
		}
	}
}

func (r *reader) began(offset int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.from = offset
}

func (r *reader) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bad = append(r.bad, fmt.Sprintf(format, args...))
}

// Merges and retention run while producers write and readers read: every acked record
// reads back as acked, readers never see a gap, a duplicate or a changed record, the
// index shrinks to a few keys, and reads below the log start say where it is.
func TestMergesAndRetentionKeepReadersWhole(t *testing.T) {
	for _, tc := range []struct {
		name        string
		method      string // how merged segments are built
		padding     int    // bytes of incompressible padding per record
		mergeBytes  int64
		maxSegments int64 // per partition, once merges settle
		recentBytes int64 // 1: nothing stays in memory, merges read the store
		linkBytes   int64 // NodeConfig.MergeLinkBytes
	}{
		// Small records (12 KiB stored per partition): segments with small blocks, decoded
		// and encoded afresh once half a merge target has gathered.
		{"encode", mergeEncode, 0, 4 << 10, 16, 1, -1},
		// Records of 20 KiB: segments whose blocks are joined as stored, read back from
		// the store, or as kept in memory since their upload.
		// ~6 MiB per partition: at most 12 merged segments of half a target or more, and
		// fewer than half a target's bytes (25 segments of 20 KiB) waiting for a merge.
		{"concat from the store", mergeConcat, 20 << 10, 1 << 20, 40, 1, -1},
		{"concat from memory", mergeConcat, 20 << 10, 1 << 20, 40, 0, -1},
		// The same segments linked where they are stored: readers read a merged
		// segment's pieces from the objects the writer put them in.
		{"link", mergeLink, 20 << 10, 1 << 20, 40, 1, 16 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testMergesAndRetention(t, tc.method, tc.padding, tc.mergeBytes, tc.maxSegments, tc.recentBytes, tc.linkBytes)
		})
	}
}

func testMergesAndRetention(t *testing.T, method string, padding int, mergeBytes, maxSegments, recentBytes, linkBytes int64) {
	f := newFixture(t)
	ctx := context.Background()
	// Small merge targets so that several levels of merges happen in seconds.
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "rw", Partitions: 2, LingerMs: 1, MergeBytes: mergeBytes, RetentionMs: -1}); err != nil {
		t.Fatal(err)
	}
	builtBefore := testutil.ToFloat64(metricMergeMethod.WithLabelValues(method))
	mergedBefore := testutil.ToFloat64(metricMergedSegments.WithLabelValues("rw"))
	pad := make([]byte, padding)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range pad {
		pad[i] = byte(rng.Uint32())
	}
	nodes := startNodesWith(t, f, 1, func(c *NodeConfig) {
		c.CompactInterval, c.RecentBytes, c.MergeLinkBytes = 50*time.Millisecond, recentBytes, linkBytes
	})
	readsBefore := testutil.ToFloat64(metricMergeReads)
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	acked := map[coordination.Partition]map[int64]string{}
	var ackMu sync.Mutex
	var readers []*reader
	commits := 0
	for i := range int32(2) {
		p := coordination.Partition{Topic: "rw", Partition: i}
		acked[p] = map[int64]string{}
		rd := &reader{node: nodes[0], p: p, seen: map[int64]string{}}
		readers = append(readers, rd)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for n := 0; rctx.Err() == nil && n < 300; n++ {
				vals := []*partitionpb.Record{{Value: fmt.Appendf(nil, "%d-%d-a-%0200d", i, n, n), Key: pad}, {Value: fmt.Appendf(nil, "%d-%d-b", i, n), Key: pad}}
				resp, err := nodes[0].Client().Produce(rctx, p, vals)
				if err != nil || resp.Code != partitionpb.Code_CODE_OK {
					continue // not acked: not checked
				}
				ackMu.Lock()
				commits++
				for k, v := range vals {
					acked[p][resp.BaseOffset+int64(k)] = string(v.Value)
				}
				ackMu.Unlock()
			}
		}()
		go func() {
			defer wg.Done()
			for rctx.Err() == nil {
				rd.pass(rctx)
			}
		}()
	}
	// Produce until the producers are done, then let merges settle.
	harness.Eventually(t, time.Minute, func() error {
		ackMu.Lock()
		defer ackMu.Unlock()
		if commits < 600 {
			return fmt.Errorf("%d produce requests acked", commits)
		}
		return nil
	})
	harness.Eventually(t, 30*time.Second, func() error {
		for i := range int32(2) {
			st, err := f.c.PartitionStats(ctx, "rw", i)
			if err != nil {
				return err
			}
			// 300 requests, each its own segment or a few together, merge into a few
			// segments of up to the merge target.
			if st.Segments > maxSegments {
				return fmt.Errorf("partition %d has %d segments: %+v", i, st.Segments, st)
			}
		}
		return nil
	})
	// Retention by size: the log start moves up, and reads below it say where it is.
	limit := int64(coordination.MinSegmentBytes)
	if _, err := f.c.AlterTopic(ctx, "rw", coordination.TopicChanges{RetentionBytes: &limit}); err != nil {
		t.Fatal(err)
	}
	var start int64
	harness.Eventually(t, 30*time.Second, func() error {
		st, err := f.c.PartitionStats(ctx, "rw", 0)
		// Retention keeps the newest segment whatever its size.
		if err != nil || st.LogStart == 0 || (st.Segments > 1 && st.StoredBytes > limit+mergeBytes) {
			return fmt.Errorf("stats %+v, %v", st, err)
		}
		start = st.LogStart
		return nil
	})
	resp, err := nodes[0].Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "rw", Offset: start - 1})
	if err != nil || resp.Code != partitionpb.Code_CODE_OUT_OF_RANGE || resp.LogStartOffset < start {
		t.Fatalf("fetch below the log start %d: %v %v", start, resp, err)
	}
	// An answer with records says where the log starts too (Kafka's fetch answers carry it).
	resp, err = nodes[0].Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "rw", Offset: start})
	if err != nil || resp.Code != partitionpb.Code_CODE_OK || len(resp.Records) == 0 || resp.LogStartOffset < start {
		t.Fatalf("fetch at the log start %d: log start %d, %d records, %v", start, resp.GetLogStartOffset(), len(resp.GetRecords()), err)
	}
	// Let the readers make more passes over the rewritten index, then stop.
	before := readers[0].passesDone()
	harness.Eventually(t, 30*time.Second, func() error {
		if n := readers[0].passesDone(); n < before+3 {
			return fmt.Errorf("%d passes after retention", n-before)
		}
		return nil
	})
	stop()
	wg.Wait()
	for _, rd := range readers {
		// A last whole pass, now that nothing writes: from the log start to the end (a
		// pass that met a moment's error is made again).
		passes := rd.passesDone()
		if err := harness.WaitFor(30*time.Second, func() error {
			if rd.pass(ctx); rd.passesDone() == passes {
				return fmt.Errorf("partition %d: the last pass did not reach the log's end", rd.p.Partition)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
		if len(rd.bad) > 0 {
			t.Errorf("partition %d reader: %d anomalies, first: %v", rd.p.Partition, len(rd.bad), rd.bad[:min(5, len(rd.bad))])
		}
		// Every acked record was read as acked: retention removed only a prefix, below
		// where the last pass began, and the last pass read the rest.
		for o, v := range acked[rd.p] {
			got, ok := rd.seen[o]
			switch {
			case ok && got != v:
				t.Errorf("partition %d offset %d: acked %q, read %q", rd.p.Partition, o, v, got)
			case !ok && o >= rd.from:
				t.Errorf("partition %d offset %d: acked %q, never read (the log starts at %d)", rd.p.Partition, o, v, rd.from)
			}
		}
		if rd.passes < 5 || len(rd.seen) < 300 {
			t.Errorf("partition %d reader proved little: %d passes, %d offsets", rd.p.Partition, rd.passes, len(rd.seen))
		}
	}
	if got := testutil.ToFloat64(metricMergedSegments.WithLabelValues("rw")) - mergedBefore; got < 100 {
		t.Errorf("only %v segments merged", got)
	}
	if got := testutil.ToFloat64(metricMergeMethod.WithLabelValues(method)) - builtBefore; got == 0 {
		t.Errorf("no merged segment was built by %s", method)
	}
	if reads := testutil.ToFloat64(metricMergeReads) - readsBefore; recentBytes == 1 && reads == 0 && method != mergeLink {
		t.Error("merges never read the store, though nothing stayed in memory")
	}
}

// A linked segment merged again by copy (here: by an agent whose merges always copy) is
// read from its pieces and rewritten as one stored segment, and every record reads back
// as acked.
func TestLinkedSegmentsMergeAgainByCopy(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "lk", Partitions: 1, LingerMs: 1, MergeBytes: 1 << 20, RetentionMs: -1}); err != nil {
		t.Fatal(err)
	}
	p := coordination.Partition{Topic: "lk"}
	rng := rand.New(rand.NewPCG(3, 4))
	acked := map[int64]string{}
	produce := func(n *Node, requests int) {
		t.Helper()
		for range requests {
			// 40 KiB of incompressible values: each request its own segment of ~40 KiB.
			vals := make([]*partitionpb.Record, 2)
			for k := range vals {
				v := make([]byte, 20<<10)
				for i := range v {
					v[i] = byte('a' + rng.IntN(26))
				}
				vals[k] = &partitionpb.Record{Value: v}
			}
			resp, err := n.Client().Produce(ctx, p, vals)
			if err != nil || resp.Code != partitionpb.Code_CODE_OK {
				t.Fatalf("produce: %v %v", resp, err)
			}
			for k, v := range vals {
				acked[resp.BaseOffset+int64(k)] = string(v.Value)
			}
		}
	}
	first := func() (coordination.SegmentMeta, int64) {
		t.Helper()
		segs, _, err := f.c.SegmentRange(ctx, "lk", 0, 0)
		if err != nil || len(segs) == 0 {
			t.Fatalf("index: %v %v", segs, err)
		}
		return segs[0], int64(len(segs))
	}
	tune := func(link int64) func(*NodeConfig) {
		return func(c *NodeConfig) { c.CompactInterval, c.RecentBytes, c.MergeLinkBytes = 50*time.Millisecond, 1, link }
	}
	linking := startNodesWith(t, f, 1, tune(16<<10))[0]
	produce(linking, 16) // 640 KiB: more than half the merge target
	harness.Eventually(t, 30*time.Second, func() error {
		if s, _ := first(); len(s.Parts) < minMergeSegments {
			return fmt.Errorf("first segment %+v is not linked", s)
		}
		return nil
	})
	linked, _ := first()
	// Written within the minute, its parts' requests are still listed, for a next owner
	// to answer their re-sends: one request each.
	if len(linked.Requests) != len(linked.Parts) || linked.Requests[0].Base != 0 || linked.Requests[len(linked.Requests)-1].Base != linked.Parts[len(linked.Parts)-1].Base {
		t.Fatalf("linked segment of %d parts lists requests %+v", len(linked.Parts), linked.Requests)
	}
	if err := linking.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// A larger target makes the linked segment small again; an agent that copies
	// merges it with what follows once enough has gathered behind it.
	target := int64(4 << 20)
	if _, err := f.c.AlterTopic(ctx, "lk", coordination.TopicChanges{MergeBytes: &target}); err != nil {
		t.Fatal(err)
	}
	copying := startNodesWith(t, f, 1, tune(-1))[0]
	concatBefore := testutil.ToFloat64(metricMergeMethod.WithLabelValues(mergeConcat))
	produce(copying, 48)
	harness.Eventually(t, time.Minute, func() error {
		if s, _ := first(); len(s.Parts) > 0 || s.Last <= linked.Last {
			return fmt.Errorf("first segment [%d, %d] (%d parts), the linked one [%d, %d]", s.Base, s.Last, len(s.Parts), linked.Base, linked.Last)
		}
		return nil
	})
	if got := testutil.ToFloat64(metricMergeMethod.WithLabelValues(mergeConcat)) - concatBefore; got == 0 {
		t.Error("no merge by concatenation")
	}
	for offset := int64(0); offset < int64(len(acked)); {
		resp, err := copying.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "lk", Offset: offset, MaxBytes: 1 << 20})
		if err != nil || resp.Code != partitionpb.Code_CODE_OK || len(resp.Records) == 0 {
			t.Fatalf("fetch at %d: %v %v", offset, resp, err)
		}
		for _, r := range resp.Records {
			if r.Offset != offset || string(r.Value) != acked[offset] {
				t.Fatalf("read offset %d (%d bytes) where offset %d was acked", r.Offset, len(r.Value), offset)
			}
			offset++
		}
	}
}

func (r *reader) passesDone() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.passes
}

// A merge lists the newest maxSegmentRequests requests of its segments written within
// requestMemory (those whose answers a failover may have lost are the last written);
// older segments' requests are dropped.
func TestMergeListsTheNewestRequestsOfFreshSegments(t *testing.T) {
	f := newFixture(t)
	l := newPartitionLog(f.lease(t, "mr", 1, 0), 0, coordination.TopicSpec{}, &recentLog{}, zap.NewNop())
	now := time.Now()
	var old []indexed
	id := uint64(1)
	for i := range int64(6) {
		m := coordination.SegmentMeta{Base: i * maxSegmentRequests, Last: (i+1)*maxSegmentRequests - 1, WrittenMs: now.UnixMilli()}
		if i < 2 {
			m.WrittenMs = now.Add(-2 * requestMemory).UnixMilli()
		}
		for o := m.Base; o <= m.Last; o++ {
			m.Requests = append(m.Requests, coordination.RequestRef{ID: id, Base: o, Count: 1})
			id++
		}
		old = append(old, indexed{SegmentMeta: m})
	}
	meta := mergedMeta(l, old)
	refs := meta.Requests
	if len(refs) != maxSegmentRequests || refs[len(refs)-1].ID != id-1 || refs[0].ID != id-maxSegmentRequests {
		t.Fatalf("the merge lists %d requests, ids %d to %d; want the newest %d, to %d", len(refs), refs[0].ID, refs[len(refs)-1].ID, maxSegmentRequests, id-1)
	}
	// None of the old segments' requests, however few the fresh ones have.
	meta = mergedMeta(l, old[:3])
	if refs := meta.Requests; len(refs) != maxSegmentRequests || refs[0].ID != 2*maxSegmentRequests+1 {
		t.Fatalf("a merge of two old segments and a fresh one lists %d requests from id %d, want the fresh one's %d from %d",
			len(refs), refs[0].ID, maxSegmentRequests, 2*maxSegmentRequests+1)
	}
}

// With compaction off (a negative --compact-interval) a topic's new settings still reach
// its partitions: a linger cut from a minute to 5 ms writes the record already waiting,
// which the client would otherwise give up on.
func TestSettingsReachPartitionsWithCompactionOff(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "slow", Partitions: 1, LingerMs: 60_000}); err != nil {
		t.Fatal(err)
	}
	node := startNodesWith(t, f, 1, func(c *NodeConfig) { c.CompactInterval = -1 })[0]
	p := coordination.Partition{Topic: "slow"}
	type result struct {
		resp *partitionpb.ProduceResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := node.Client().Produce(ctx, p, []*partitionpb.Record{{Value: []byte("waiting")}})
		done <- result{resp, err}
	}()
	harness.Eventually(t, 10*time.Second, func() error { // the partition is active
		resp, err := f.c.Etcd().Get(ctx, f.c.Keys().Lease("slow", 0))
		if err == nil && len(resp.Kvs) == 0 {
			err = fmt.Errorf("no lease yet")
		}
		return err
	})
	linger := int64(5)
	if _, err := f.c.AlterTopic(ctx, "slow", coordination.TopicChanges{LingerMs: &linger}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.resp.Code != partitionpb.Code_CODE_OK {
			t.Fatalf("produce: %v %v", r.resp, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the record waits for the old linger of a minute")
	}
}

// A merge's reads from the store are bounded as its PUT is: a GET that stalls (a
// half-open connection) held the compactor's pass, and with it retention and merges of
// every partition of the agent, until TCP gave up, minutes later.
func TestAMergeReadThatStallsEndsInTime(t *testing.T) {
	f := newFixture(t)
	store := &gatedReads{Store: f.store}
	store.shut() // every GET waits until its context ends
	c := &compactor{store: store, upload: 200 * time.Millisecond, log: zap.NewNop()}
	l := newPartitionLog(f.lease(t, "stall", 1, 0), 0, coordination.TopicSpec{}, &recentLog{}, zap.NewNop())
	in := indexed{SegmentMeta: coordination.SegmentMeta{Object: "data/stall.obj", Base: 0, Last: 9, Records: 10, Bytes: 1000, ZBytes: 400}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends the GET if the bound did not
	done := make(chan error, 1)
	go func() { done <- c.fetch(ctx, []*mergeJob{{log: l, in: []indexed{in}}}) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a merge's read of a store that never answers: no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a merge's read of a store that never answers still waits after 10 s")
	}
	if store.held() != 1 {
		t.Fatalf("%d GETs, want 1", store.held())
	}
}
