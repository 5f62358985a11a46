package coordination_test

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// TestSegmentsWithinTheClientsMaxTxnOps: an etcd run with --max-txn-ops below its
// default of 128 refuses larger transactions; a client told so (Options.MaxTxnOps) still
// finds the segment holding any offset, which takes cutting a window of several keys
// into parts read in one transaction.
func TestSegmentsWithinTheClientsMaxTxnOps(t *testing.T) {
	e := harness.EtcdForTest(t, harness.EtcdOptions{ExtraArgs: []string{"--max-txn-ops", "16"}})
	c, err := coordination.New(etcdClient(t, e.Endpoint), coordination.Options{Root: "/test/max-txn-ops", MaxTxnOps: 16,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	if err != nil {
		t.Fatal(err)
	}
	mustTopic(t, c, "t", 1)
	metas := writeIndex(t, c, "t", 0, 0, slices.Repeat([]int64{10}, 100))
	ctx := ctxT(t)
	for from := int64(0); from < 1000; from += 7 {
		segs, _, err := c.Segments(ctx, "t", 0, from, 1)
		if err != nil {
			t.Fatalf("segments from %d: %v", from, err)
		}
		if want := metas[from/10].Base; len(segs) != 1 || segs[0].Base != want {
			t.Fatalf("segments from %d: bases %v, want [%d]", from, basesOf(segs), want)
		}
	}
}

func TestSegmentsFromOffset(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 2)
	s := mustSession(t, c, "a", 0)
	ctx := ctxT(t)
	l, err := s.Acquire(ctx, "t", 1)
	if err != nil {
		t.Fatal(err)
	}
	// Segments [0,9] [10,19] ... [90,99]; more than 10 so that 20-digit padding matters.
	for base := int64(0); base < 100; base += 10 {
		if _, err := l.Commit(ctx, segment(base, 10, 0)); err != nil {
			t.Fatal(err)
		}
	}
	bases := func(from int64, limit int) []int64 {
		t.Helper()
		segs, hwm, err := c.Segments(ctx, "t", 1, from, limit)
		if err != nil || hwm != 100 {
			t.Fatalf("segments from %d: hwm %d, %v", from, hwm, err)
		}
		return basesOf(segs)
	}
	for _, tc := range []struct {
		from  int64
		limit int
		want  []int64
	}{
		{0, 0, []int64{0, 10, 20, 30, 40, 50, 60, 70, 80, 90}},
		{35, 3, []int64{30, 40, 50}},
		{40, 2, []int64{40, 50}},
		{99, 0, []int64{90}},
		{100, 0, nil}, // the log end: nothing yet, not an error
	} {
		if got := bases(tc.from, tc.limit); !equalInts(got, tc.want) {
			t.Errorf("segments from %d limit %d = %v, want %v", tc.from, tc.limit, got, tc.want)
		}
	}
	for _, bad := range []struct {
		p    int32
		from int64
		want error
	}{
		{1, 101, coordination.ErrOffsetOutOfRange},
		{1, -1, coordination.ErrInvalidArgument},
		{2, 0, coordination.ErrPartitionNotFound},
	} {
		if _, _, err := c.Segments(ctx, "t", bad.p, bad.from, 0); !errors.Is(err, bad.want) {
			t.Errorf("segments of %d from %d: %v, want %v", bad.p, bad.from, err, bad.want)
		}
	}
	// A partition that never had an owner is empty at 0.
	if segs, hwm, err := c.Segments(ctx, "t", 0, 0, 0); err != nil || hwm != 0 || len(segs) != 0 {
		t.Fatalf("untouched partition: %v %d %v", segs, hwm, err)
	}
	if h, err := c.HWM(ctx, "t", 0); err != nil || h != 0 {
		t.Fatalf("hwm of untouched partition: %d, %v", h, err)
	}
}

// TestSegmentsFindTheOneHoldingAnOffset: a read from any offset of a partition starts at
// the segment holding it, in an index of segments of every size: thousands of one record
// before one of five million (an offset deep in it is far from any key), runs of small
// ones, and a log start that retention moved. Each answer is checked against the layout.
func TestSegmentsFindTheOneHoldingAnOffset(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 1)
	var sizes []int64
	for _, run := range []struct{ n, records int64 }{{3000, 1}, {1, 5_000_000}, {200, 7}, {1, 300_000}, {1, 1}, {50, 1}} {
		sizes = append(sizes, slices.Repeat([]int64{run.records}, int(run.n))...)
	}
	const start = 500
	metas := writeIndex(t, c, "t", 0, start, sizes)
	hwm := metas[len(metas)-1].Last + 1
	want := func(from int64, limit int) []int64 {
		i, _ := slices.BinarySearchFunc(metas, from, func(m coordination.SegmentMeta, o int64) int { return cmp.Compare(m.Last, o) })
		got := metas[i:]
		if limit > 0 {
			got = got[:min(limit, len(got))]
		}
		return basesOf(got)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	froms := []int64{start, hwm}
	for i, m := range metas {
		if i < 3 || i%250 == 0 || (i > 0 && metas[i-1].Records != m.Records) || i == len(metas)-1 {
			froms = append(froms, m.Base, m.Base+m.Records/2, m.Last)
			for _, in := range []int64{1, 63, 64, 65, 1024 + 64, 1024 + 65} { // the windows' edges
				if in < m.Records {
					froms = append(froms, m.Base+in)
				}
			}
		}
	}
	for range 200 {
		froms = append(froms, start+rng.Int64N(hwm-start))
	}
	ctx := ctxT(t)
	for _, from := range froms {
		for _, limit := range []int{64, 1} {
			segs, h, err := c.Segments(ctx, "t", 0, from, limit)
			if err != nil || h != hwm {
				t.Fatalf("segments from %d: hwm %d, %v", from, h, err)
			}
			if got, want := basesOf(segs), want(from, limit); !equalInts(got, want) {
				t.Fatalf("segments from %d, limit %d: bases %v, want %v", from, limit, got, want)
			}
		}
	}
	for _, bad := range []int64{start - 1, 0, hwm + 1} {
		if _, _, err := c.Segments(ctx, "t", 0, bad, 64); !errors.Is(err, coordination.ErrOffsetOutOfRange) {
			t.Errorf("segments from %d (log %d-%d): %v, want out of range", bad, start, hwm, err)
		}
	}
}

// TestFirstSegmentStopsAtTheMatch: the first segment from a base that a test accepts,
// found past the first page of the index read (1000 keys), from the base given; none when
// no segment from there is accepted.
func TestFirstSegmentStopsAtTheMatch(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 1)
	writeIndex(t, c, "t", 0, 0, slices.Repeat([]int64{10}, 2500))
	ctx := ctxT(t)
	for _, tc := range []struct {
		from, match, want int64
		found             bool
	}{
		{0, 21_000, 21_000, true}, // the third page
		{0, 20_995, 21_000, true}, // inside a segment: the next one starting at or after it
		{21_010, 0, 21_010, true}, // the first from the base given
		{21_005, 0, 21_010, true}, // a base inside a segment: the next one
		{0, 25_000, 0, false},     // past the last
	} {
		seg, ok, err := c.FirstSegment(ctx, "t", 0, tc.from, func(m coordination.SegmentMeta) bool { return m.Base >= tc.match })
		if err != nil || ok != tc.found || (ok && seg.Base != tc.want) {
			t.Errorf("first from %d with base >= %d: %d %v %v, want %d %v", tc.from, tc.match, seg.Base, ok, err, tc.want, tc.found)
		}
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPagedReadsKeepOneRevision: a read of more keys than a page (the sweeper's index
// read) sees them all at the revision of its first page, whatever is written between
// pages. Before, each page after the second was read at the revision the one before it
// reported, etcd's latest: a merge that linked segments between pages (the first key
// rewritten to name the others' objects, which it deletes) could be seen with neither,
// and the sweeper would have deleted those objects, still indexed.
func TestPagedReadsKeepOneRevision(t *testing.T) {
	ctx := ctxT(t)
	e := etcdClient(t, etcd.Endpoint)
	c := clientOn(t, e, fmt.Sprintf("/test/paged-%d", roots.Add(1)))
	prefix := fmt.Sprintf("/test/paged-keys-%d/", roots.Add(1))
	const keys = 2500 // three pages
	for i := 0; i < keys; i += 100 {
		var ops []clientv3.Op
		for j := i; j < i+100; j++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s%05d", prefix, j), "v"))
		}
		if _, err := e.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	seen, deleted := 0, false
	rev, err := c.Scan(ctx, prefix, 0, func(kv *mvccpb.KeyValue) error {
		seen++
		if !deleted { // after the first page is read: the last key goes
			deleted = true
			if _, err := e.Delete(ctx, fmt.Sprintf("%s%05d", prefix, keys-1)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != keys {
		t.Fatalf("read %d keys of %d at revision %d: the pages were not read at one revision", seen, keys, rev)
	}
	if resp, err := e.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(rev)); err != nil || resp.Count != keys {
		t.Fatalf("at the revision the read returned, %d keys (%v), want %d", resp.Count, err, keys)
	}
}

// basesOf is the base offsets of segs.
func basesOf(segs []coordination.SegmentMeta) []int64 {
	var out []int64
	for _, s := range segs {
		out = append(out, s.Base)
	}
	return out
}

// TestRecentSegmentsAreTheLastOldestFirst: a partition's new owner reads its last
// segments, with the requests each lists, in offset order: the last limit of them, or
// back to the first written longer than the time it gives before the last.
func TestRecentSegmentsAreTheLastOldestFirst(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "orders", 1)
	l, err := mustSession(t, c, "a", 0).Acquire(ctxT(t), "orders", 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.UnixMilli(1_000_000)
	next := int64(0)
	for i := range int64(40) {
		n := int64(1) // many one-record segments, then a few large ones: windows of every density
		if i >= 30 {
			n = 1000
		}
		m := segment(next, n, l.Epoch())
		m.WrittenMs = start.Add(time.Duration(i) * time.Second).UnixMilli()
		m.Requests = []coordination.RequestRef{{ID: uint64(100 + i), Base: next, Count: int32(n)}}
		if _, err := l.Commit(ctxT(t), m); err != nil {
			t.Fatal(err)
		}
		next += n
	}
	bases := basesOf
	for _, tc := range []struct {
		limit int
		want  []int64
	}{
		{3, []int64{7030, 8030, 9030}},
		{12, []int64{28, 29, 30, 1030, 2030, 3030, 4030, 5030, 6030, 7030, 8030, 9030}},
		{100, nil}, // all 40
	} {
		got, err := l.RecentSegments(ctxT(t), next, tc.limit, 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if tc.want == nil && len(got) == 40 && got[0].Base == 0 && got[39].Requests[0].ID == 139 {
			continue
		}
		if fmt.Sprint(bases(got)) != fmt.Sprint(tc.want) {
			t.Fatalf("limit %d: bases %v, want %v", tc.limit, bases(got), tc.want)
		}
	}
	// Within a time of the last (written 39 s after the first, by the writers' clock,
	// which this test's need not be): every segment written since, and the window that
	// reached back past it, not the whole log.
	since := start.Add(35 * time.Second)
	got, err := l.RecentSegments(ctxT(t), next, 100, 1000, 4*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if b := bases(got); len(b) < 5 || len(b) >= 40 || fmt.Sprint(b[len(b)-5:]) != "[5030 6030 7030 8030 9030]" || got[0].WrittenMs >= since.UnixMilli() {
		t.Fatalf("since %v: bases %v; want those written since, and back to one written before, not all 40", since.UnixMilli(), b)
	}
	// Far enough back once those read list maxRequests: values are read newest first,
	// recentChunk at a time.
	if got, err := l.RecentSegments(ctxT(t), next, 100, 3, 0); err != nil || len(got) != 16 || got[15].Base != 9030 {
		t.Fatalf("max 3 requests: bases %v, %v; want the newest 16 (one read)", basesOf(got), err)
	}
	// An entry that does not decode is skipped, not an error that would keep the
	// partition from starting.
	bad := c.Keys().Segment("orders", 0, 29)
	if _, err := c.Etcd().Put(ctxT(t), bad, "not json"); err != nil {
		t.Fatal(err)
	}
	if got, err := l.RecentSegments(ctxT(t), next, 12, 1000, 0); err != nil || fmt.Sprint(basesOf(got)[:2]) != "[28 30]" {
		t.Fatalf("with a bad entry: bases %v, %v; want it skipped", basesOf(got), err)
	}
	if _, err := l.RecentSegments(ctxT(t), next, 0, 1000, 0); !errors.Is(err, coordination.ErrInvalidArgument) {
		t.Fatalf("limit 0: %v", err)
	}
}
