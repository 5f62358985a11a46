package actors

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
)

// The writer hears of a commit after etcd applied it, so the index load may already hold
// a commit the writer reports later: the log keeps it once.
func TestPartitionLogTakesACommitOnce(t *testing.T) {
	l := &partitionLog{loaded: true, changed: func() {}}
	seg := func(base, last int64) coordination.SegmentMeta {
		return coordination.SegmentMeta{Object: "o", Base: base, Last: last, Records: last - base + 1}
	}
	l.segs = []indexed{{SegmentMeta: seg(0, 1)}, {SegmentMeta: seg(2, 3)}}
	l.committed(seg(2, 3), time.Now(), 7) // read by the load already
	l.committed(seg(4, 9), time.Now(), 8)
	l.rewritten(0, 3, &coordination.SegmentMeta{Object: "m", Base: 0, Last: 3, Records: 4}, time.Now(), 9)
	l.committed(seg(4, 9), time.Now(), 8) // a late duplicate after a merge
	var got [][2]int64
	for _, s := range l.segs {
		got = append(got, [2]int64{s.Base, s.Last})
	}
	if want := [][2]int64{{0, 3}, {4, 9}}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("log %v, want %v", got, want)
	}
	if l.rev != 9 {
		t.Fatalf("revision %d, want 9", l.rev)
	}
}

// A rewrite whose outcome is unknown (etcd stalled past its deadline) may have been
// applied: the partition's readers drop their cached runs of the index, which would name
// the segments it took out, whose objects the sweeper deletes after its grace. Before,
// only the compactor's view was reloaded, and a fetch found in the cache a segment gone.
func TestUnknownRewriteOutcomeDropsTheReadersIndexCache(t *testing.T) {
	for _, err := range []error{errors.New("etcdserver: request timed out"), coordination.ErrIndexChanged} {
		resets := 0
		l := &partitionLog{loaded: true, changed: func() { resets++ }, log: zap.NewNop()}
		(&compactor{}).settle(l, err, "merge")
		if resets != 1 || l.loaded {
			t.Fatalf("after %v: readers' index cache reset %d times, view loaded %v; want reset once and reloaded", err, resets, l.loaded)
		}
	}
}

// Commits the writer makes while no load of the index is running are left for the next
// load to read from etcd: with compaction off no load ever runs, and the log kept every
// commit's meta (and its request ids) for the life of the partition.
func TestPartitionLogKeepsCommitsOnlyWhileALoadRuns(t *testing.T) {
	l := &partitionLog{changed: func() {}}
	seg := func(base int64) coordination.SegmentMeta {
		return coordination.SegmentMeta{Object: "o", Base: base, Last: base, Records: 1}
	}
	for i := range 1000 {
		l.committed(seg(int64(i)), time.Now(), int64(10+i))
	}
	if len(l.pending) != 0 {
		t.Fatalf("%d commits held with no load running", len(l.pending))
	}
	l.loading = true // a load is reading the index: it may miss what commits meanwhile
	l.committed(seg(1000), time.Now(), 1010)
	if len(l.pending) != 1 || l.pendingRev != 1010 {
		t.Fatalf("pending %d commits as of %d during a load, want 1 as of 1010", len(l.pending), l.pendingRev)
	}
}

// A commit the load read, that retention then removed with every other segment before
// the writer reported it, is not put back: it is below the log start.
func TestPartitionLogDropsALateCommitRetentionRemoved(t *testing.T) {
	l := &partitionLog{loaded: true, changed: func() {}}
	seg := func(base, last int64) coordination.SegmentMeta {
		return coordination.SegmentMeta{Object: "o", Base: base, Last: last, Records: last - base + 1}
	}
	l.segs = []indexed{{SegmentMeta: seg(0, 4)}, {SegmentMeta: seg(5, 9)}}
	l.rewritten(0, 9, nil, time.Now(), 12) // retention: the log starts at 10
	l.committed(seg(5, 9), time.Now(), 11) // the writer reports the commit the load read
	l.committed(seg(10, 12), time.Now(), 13)
	if len(l.segs) != 1 || l.segs[0].Base != 10 || l.logStart.Load() != 10 {
		t.Fatalf("log %+v from %d, want [10, 12] alone from 10", l.segs, l.logStart.Load())
	}
}

// The owner's figures for a describe: the view's first offset, segments and stored bytes,
// and a high-water mark past the last segment it holds even if the writer has not yet
// reported that segment's commit; nothing until the view is loaded.
func TestPartitionLogStats(t *testing.T) {
	l := &partitionLog{changed: func() {}}
	if _, _, _, _, ok := l.stats(5); ok {
		t.Fatal("stats of a view not loaded")
	}
	l.loaded = true
	if start, segs, stored, hwm, ok := l.stats(5); !ok || start != 5 || segs != 0 || stored != 0 || hwm != 5 {
		t.Fatalf("empty view: start %d, %d segments, %d bytes, hwm %d, %v; want the log starting at its high-water mark 5", start, segs, stored, hwm, ok)
	}
	l.segs = []indexed{{SegmentMeta: coordination.SegmentMeta{Base: 5, Last: 9, ZBytes: 100}}, {SegmentMeta: coordination.SegmentMeta{Base: 10, Last: 14, ZBytes: 50}}}
	if start, segs, stored, hwm, ok := l.stats(10); !ok || start != 5 || segs != 2 || stored != 150 || hwm != 15 {
		t.Fatalf("start %d, %d segments, %d bytes, hwm %d; want 5, 2, 150, 15 (the load read a commit the writer has not reported)", start, segs, stored, hwm)
	}
}
