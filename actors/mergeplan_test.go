package actors

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/coordination"
)

// simulate appends segments of size seg bytes, perPass of them between compaction passes
// a second apart, for passes passes, then makes idle passes with nothing appended,
// merging as the compactor does (every merge due at each pass). It returns the most small
// keys (below half the target) seen after a pass and those left at the end, the
// full-size segments at the end, the bytes in small segments at the end, and the bytes
// rewritten per byte written.
func simulate(perPass, passes, idle int, seg, target int64) (maxSmall, endSmall, full int, smallBytes int64, amplification float64) {
	var segs []indexed
	start := time.UnixMilli(1_000_000_000)
	next, written, rewritten := int64(0), int64(0), int64(0)
	for pass := range passes + idle {
		now := start.Add(time.Duration(pass) * time.Second)
		for k := 0; pass < passes && k < perPass; k++ {
			segs = append(segs, indexed{SegmentMeta: coordination.SegmentMeta{Base: next, Last: next, ZBytes: seg, WrittenMs: now.UnixMilli()}})
			next++
			written += seg
		}
		// The merges of one pass, applied from the last so that earlier spans stay put.
		spans := planMerges(segs, target, now)
		for k := len(spans) - 1; k >= 0; k-- {
			i, j := spans[k].i, spans[k].j
			m := indexed{SegmentMeta: coordination.SegmentMeta{Base: segs[i].Base, Last: segs[j-1].Last}}
			for _, s := range segs[i:j] {
				m.ZBytes += s.ZBytes
				m.WrittenMs = max(m.WrittenMs, s.WrittenMs)
			}
			rewritten += m.ZBytes
			segs = append(segs[:i:i], append([]indexed{m}, segs[j:]...)...)
		}
		endSmall, smallBytes = 0, 0
		for _, s := range segs {
			if s.ZBytes < target/2 {
				endSmall++
				smallBytes += s.ZBytes
			}
		}
		maxSmall, full = max(maxSmall, endSmall), len(segs)-endSmall
	}
	return maxSmall, endSmall, full, smallBytes, float64(rewritten) / float64(written)
}

// The policy keeps a partition's keys bounded under continuous produce at any rate: the
// small segments a busy partition leaves until a merge is worth it (lazyKeys), a few per
// size class, plus what arrived since the last pass; records are rewritten only a few
// times, and once at a rate whose fresh segments make full-size ones in one merge. A
// partition that turns quiet or stops merges what it held back.
func TestMergePolicyBoundsKeysAndRewrites(t *testing.T) {
	const target = 64 << 20
	for _, tc := range []struct {
		name    string
		perPass int   // segments committed per pass (a pass a second: 200 = linger 5 ms, busy)
		seg     int64 // their size
		passes  int
		idle    int     // passes with nothing committed after them
		maxAmp  float64 // bytes rewritten per byte written
		maxKeys int     // small keys after any pass
		endKeys int     // small keys at the end
	}{
		{"max rate, 1 KiB records at 8k/s", 40, 200 << 10, 3600, 0, 1.01, 200, 200},
		{"busy, 1 KiB records at 10k/s", 200, 50 << 10, 3600, 0, 1.6, 300, 300},
		{"steady, 1k records/s", 200, 5 << 10, 3600, 0, 2.5, 300, 300},
		{"steady, 1k records/s in 92 segments a second (make soak)", 92, 11 << 10, 3600, 0, 2, 300, 300},
		{"trickle, a record a second, for 10 hours", 1, 200, 36000, 0, 3, 100, 100},
		{"busy for 10 s, then stopped", 200, 50 << 10, 10, 60, 1.5, 300, 1},
	} {
		// Without retention, full-size segments accumulate (one per target bytes); the
		// bound is on everything else.
		small, end, full, smallBytes, amp := simulate(tc.perPass, tc.passes, tc.idle, tc.seg, target)
		written := int64(tc.perPass) * int64(tc.passes) * tc.seg
		t.Logf("%s: at most %d small keys, %d at the end, %d full-size segments at the end (%d MiB written), %.2f bytes rewritten per byte",
			tc.name, small, end, full, written>>20, amp)
		if small > tc.maxKeys || end > tc.endKeys {
			t.Errorf("%s: %d small keys at most, %d at the end; want at most %d and %d", tc.name, small, end, tc.maxKeys, tc.endKeys)
		}
		if limit := int(written / (target / 2)); full > limit {
			t.Errorf("%s: %d full-size segments for %d MiB, want at most %d", tc.name, full, written>>20, limit)
		}
		// Small segments do not pile up: what they hold at the end is a few merge targets.
		if smallBytes > 4*target {
			t.Errorf("%s: %d MiB left in small segments", tc.name, smallBytes>>20)
		}
		if amp > tc.maxAmp {
			t.Errorf("%s: %.2f bytes rewritten per byte written, want at most %.2f", tc.name, amp, tc.maxAmp)
		}
	}
}

func TestPlanExpiryRemovesAPrefix(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	mk := func(maxTs []int64) []indexed {
		var out []indexed
		for i, ts := range maxTs {
			out = append(out, indexed{SegmentMeta: coordination.SegmentMeta{Base: int64(i), Last: int64(i), ZBytes: 100, MaxTs: ts}})
		}
		return out
	}
	minute := time.Minute.Milliseconds()
	spec := coordination.TopicSpec{RetentionMs: minute, RetentionBytes: -1}
	segs := mk([]int64{now.UnixMilli() - 3*minute, now.UnixMilli() - 2*minute, now.UnixMilli() - 10, now.UnixMilli() - 5*minute})
	if n := planExpiry(segs, spec, now); n != 2 {
		t.Fatalf("expired by time: %d, want 2 (a newer segment stops it, older ones after it wait)", n)
	}
	// Time counts from the write, not from the records' timestamps: records produced with
	// an old timestamp a second ago are kept.
	for i := range segs {
		segs[i].WrittenMs = now.UnixMilli() - 1000
	}
	if n := planExpiry(segs, spec, now); n != 0 {
		t.Fatalf("segments written a second ago with old timestamps: %d expired", n)
	}
	segs[0].WrittenMs = now.UnixMilli() - 2*minute
	if n := planExpiry(segs, spec, now); n != 1 {
		t.Fatalf("expired by write time: %d, want 1", n)
	}
	for i := range segs {
		segs[i].WrittenMs = 0
	}
	spec = coordination.TopicSpec{RetentionMs: -1, RetentionBytes: 250}
	if n := planExpiry(segs, spec, now); n != 1 {
		t.Fatalf("expired by size: %d, want 1 (400 bytes, keep at least 250)", n)
	}
	spec = coordination.TopicSpec{RetentionMs: -1, RetentionBytes: -1}
	if n := planExpiry(segs, spec, now); n != 0 {
		t.Fatalf("no retention: %d removed", n)
	}
	// A spec stored before retention bytes existed (0) has no size limit.
	spec = coordination.TopicSpec{RetentionMs: -1}
	if n := planExpiry(segs, spec, now); n != 0 {
		t.Fatalf("old spec: %d removed", n)
	}
}

func TestPlanReadsReadsEachObjectOnceAndLittleElse(t *testing.T) {
	seg := func(object string, offset, size int64) indexed {
		return indexed{SegmentMeta: coordination.SegmentMeta{Object: object, Offset: offset, ZBytes: size}}
	}
	const gap = 64 << 10
	// Object a: two partitions' segments side by side (one run), then one past a gap of
	// other partitions' segments larger than gap (a run of its own). Object b: one
	// segment, a gap of exactly gap bytes, another (one run). Given out of order.
	segs := []indexed{
		seg("b", gap+100, 50),
		seg("a", 1000, 500),
		seg("a", 5<<20, 300),
		seg("b", 0, 100),
		seg("a", 0, 1000),
		seg("a", 500, 100), // within another: the same GET
	}
	runs, runOf := planReads(segs, gap)
	type want struct {
		object string
		lo, hi int64
	}
	got := map[want]bool{}
	for _, r := range runs {
		got[want{r.object, r.lo, r.hi}] = true
	}
	for _, w := range []want{{"a", 0, 1500}, {"a", 5 << 20, 5<<20 + 300}, {"b", 0, gap + 150}} {
		if !got[w] {
			t.Errorf("no GET of %s [%d, %d); GETs %v", w.object, w.lo, w.hi, got)
		}
	}
	if len(runs) != 3 {
		t.Errorf("%d GETs, want 3: %v", len(runs), got)
	}
	for k, s := range segs {
		r := runOf[k]
		if r.object != s.Object || s.Offset < r.lo || s.Offset+s.ZBytes > r.hi {
			t.Errorf("segment %s [%d, +%d) mapped to GET %s [%d, %d)", s.Object, s.Offset, s.ZBytes, r.object, r.lo, r.hi)
		}
	}
	if runs, _ := planReads(nil, gap); len(runs) != 0 {
		t.Errorf("%d GETs for no segments", len(runs))
	}
}

// TestPlanExpiryKeepsItsTombstoneWithinEtcdsRequests: retention of a large partition's
// linked segments (1000 expired, 128 pieces each in objects of their own) removes a
// prefix whose tombstone fits one etcd request, and the rest in later passes. Before, it
// planned all of them at once: a transaction etcd refused every pass, so nothing expired
// and the partition stopped merging.
func TestPlanExpiryKeepsItsTombstoneWithinEtcdsRequests(t *testing.T) {
	now := time.UnixMilli(10_000_000)
	var segs []indexed
	for i := range int64(1000) {
		m := coordination.SegmentMeta{Base: i * 128, Last: i*128 + 127, WrittenMs: 1}
		for j := range int64(128) {
			m.Parts = append(m.Parts, coordination.SegmentPart{Object: fmt.Sprintf("data/agent-1/%012d-%010d.obj", i, j), Base: m.Base + j, Last: m.Base + j})
		}
		segs = append(segs, indexed{SegmentMeta: m})
	}
	spec := coordination.TopicSpec{RetentionMs: time.Minute.Milliseconds(), RetentionBytes: -1}
	n := planExpiry(segs, spec, now)
	if n < 1 || n >= len(segs) {
		t.Fatalf("%d of %d expired segments planned", n, len(segs))
	}
	names, err := json.Marshal(coordination.ObjectsOf(metas(segs[:n])))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) > coordination.MaxTombstoneBytes {
		t.Fatalf("the tombstone of %d segments names %d bytes of objects, more than %d", n, len(names), coordination.MaxTombstoneBytes)
	}
}

// TestPlanMergesKeepsItsTombstoneWithinEtcdsRequests: a merge of small linked segments
// (with --merge-link-bytes far below its default, 128 pieces each in objects of their
// own) takes a run whose tombstone fits one etcd request, and the rest in later merges.
// Before, it took up to maxMergeSegments of them: a swap etcd refused every pass, and
// each pass left another orphan merge object.
func TestPlanMergesKeepsItsTombstoneWithinEtcdsRequests(t *testing.T) {
	now := time.UnixMilli(10_000_000)
	var segs []indexed
	for i := range int64(300) {
		m := coordination.SegmentMeta{Base: i * 128, Last: i*128 + 127, ZBytes: 128 << 10, WrittenMs: 1}
		for j := range int64(128) {
			m.Parts = append(m.Parts, coordination.SegmentPart{Object: fmt.Sprintf("data/agent-1/%012d-%010d.obj", i, j), Base: m.Base + j, Last: m.Base + j})
		}
		segs = append(segs, indexed{SegmentMeta: m})
	}
	spans := planMerges(segs, 1<<30, now)
	if len(spans) == 0 {
		t.Fatal("no merge planned for 300 small segments")
	}
	for _, sp := range spans {
		names, err := json.Marshal(coordination.ObjectsOf(metas(segs[sp.i:sp.j])))
		if err != nil {
			t.Fatal(err)
		}
		if len(names) > coordination.MaxTombstoneBytes {
			t.Fatalf("the tombstone of a merge of segments [%d, %d) names %d bytes of objects, more than %d", sp.i, sp.j, len(names), coordination.MaxTombstoneBytes)
		}
	}
}

// TestMergesKeepTheRequestsThatMayBeResent: a merge drops no request id of the newest
// segments with ids, as many as a partition's next owner reads to answer re-sends
// (resendable), and merges the segments before them whatever ids they lose, so that a
// partition taking thousands of requests a second still has its segments merged.
// Before, a quiet partition's fresh segments merged at once and kept the newest
// maxSegmentRequests ids of the run.
func TestMergesKeepTheRequestsThatMayBeResent(t *testing.T) {
	now := time.UnixMilli(10_000_000_000)
	withIDs := func(n, ids int) []indexed {
		var segs []indexed
		for i := range int64(n) {
			m := coordination.SegmentMeta{Base: i * 1000, Last: i*1000 + 999, ZBytes: 4 << 10, WrittenMs: now.UnixMilli() - 5000 + i}
			for j := range int64(ids) {
				m.Requests = append(m.Requests, coordination.RequestRef{ID: uint64(i*1000 + j + 1), Base: m.Base + j, Count: 1})
			}
			segs = append(segs, indexed{SegmentMeta: m})
		}
		return segs
	}
	for _, tc := range []struct {
		name           string
		segs, ids      int
		keep, unmerged int // the first segment whose ids are kept; the most segments one pass leaves
	}{
		// A quiet partition: the last 256 segments' ids are kept, and they merge in
		// runs of what a merged segment keeps.
		{"10 ids a segment", 300, 10, 300 - recentSegments, 6},
		// A partition of thousands of requests a second: the segments holding the last
		// 4096 ids are kept as they are (two make more ids than one keeps), the
		// rest merge.
		{"300 ids a segment", 2000, 300, 2000 - maxRememberedPerPartition/300 - 1, maxRememberedPerPartition/300 + 1},
	} {
		segs := withIDs(tc.segs, tc.ids)
		if got := resendable(segs); got != tc.keep {
			t.Errorf("%s: ids kept from segment %d, want %d", tc.name, got, tc.keep)
		}
		merged := 0
		for _, sp := range planMerges(segs, 64<<20, now) {
			dropped, before := -maxSegmentRequests, 0
			for k, s := range segs[sp.i:sp.j] {
				dropped += len(s.Requests)
				if sp.i+k < tc.keep {
					before += len(s.Requests)
				}
			}
			if dropped > before {
				t.Errorf("%s: a merge of segments [%d, %d) drops %d request ids, %d of them of the newest segments", tc.name, sp.i, sp.j, dropped, dropped-before)
			}
			merged += sp.j - sp.i - 1
		}
		if left := tc.segs - merged; left > tc.unmerged {
			t.Errorf("%s: %d of %d segments left after the merges planned", tc.name, left, tc.segs)
		}
	}
	// Segments written more than requestMemory before the newest have no ids left
	// (partitionLog.snapshot): they merge in one.
	old := withIDs(300, 0)
	if spans := planMerges(old, 64<<20, now); len(spans) != 1 || spans[0] != (span{0, 300}) {
		t.Errorf("300 segments without ids: merges %v, want one of all", spans)
	}
}
