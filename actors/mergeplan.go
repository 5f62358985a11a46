package actors

import (
	"time"

	"github.com/streamhouse/streamhouse/coordination"
)

// Merge policy (docs/operations.md "Retention and merging"). Segments smaller than half
// the topic's merge target are "small". In a run of adjacent small segments, a merge
// starts at the first segment that is at most 1/mergeFanIn of everything after it in the
// run, and takes segments up to the merge target: so fresh segments are merged together
// as soon as there are enough of them, and a merged segment is merged again only once
// mergeFanIn times its size has gathered behind it. Every record is thus rewritten about
// log_mergeFanIn(target / first merge) times, and a partition keeps a few small segments
// per size class plus the ones committed since the last pass, whatever its rate.
const (
	mergeFanIn = 4
	// minMergeSegments: fewer segments than this are not worth a rewrite.
	minMergeSegments = 4
	// maxMergeSegments bounds one merge (the tombstone names at most this many objects).
	maxMergeSegments = 2000
	// maxRemoveSegments bounds the segments one retention rewrite removes.
	maxRemoveSegments = 2000
)

// indexed is a committed segment as its partition's log knows it.
type indexed struct {
	coordination.SegmentMeta
	// stored is when its object was written, by this agent's clock; zero for segments
	// loaded from etcd at activation, whose age is unknown.
	stored time.Time
}

// span is a run [i, j) of a partition's segments to merge into one.
type span struct{ i, j int }

// planMerges returns the merges the policy calls for in segs, in offset order and
// disjoint: an old run of merged segments and the fresh tail can both be due at once.
func planMerges(segs []indexed, target int64) []span {
	small := target / 2
	var out []span
	for a := 0; a < len(segs); {
		if segs[a].ZBytes >= small {
			a++
			continue
		}
		b := a
		for b < len(segs) && segs[b].ZBytes < small {
			b++
		}
		for from := a; from < b; {
			i, j, ok := planRun(segs[from:b], target)
			if !ok {
				break
			}
			out = append(out, span{from + i, from + j})
			from += j
		}
		a = b
	}
	return out
}

// planRun applies the policy to a run of small segments: the first merge due in it.
func planRun(run []indexed, target int64) (int, int, bool) {
	after := int64(0) // bytes after segment i in the run
	for _, s := range run {
		after += s.ZBytes
	}
	for i := range run {
		after -= run[i].ZBytes
		if run[i].ZBytes*mergeFanIn > after {
			continue
		}
		size, j := int64(0), i
		for j < len(run) && j-i < maxMergeSegments && (j == i || size+run[j].ZBytes <= target) {
			size += run[j].ZBytes
			j++
		}
		// Few segments are worth a rewrite only when they make a full-size one.
		if j-i >= minMergeSegments || (j-i >= 2 && size >= target/2) {
			return i, j, true
		}
	}
	return 0, 0, false
}

// planExpiry returns how many of the oldest segments retention removes: those written
// longer than the retention time ago, and those whose removal still leaves at least the
// retention bytes. Only a prefix of the log is ever removed, so that the log start is the
// base of the first segment left.
//
// Time counts from when the records were written, not from the timestamps producers
// gave them: a record produced with an old timestamp is kept for the retention time like
// any other (Kafka's log.message.timestamp.type=LogAppendTime).
func planExpiry(segs []indexed, spec coordination.TopicSpec, now time.Time) int {
	n := 0
	if r := spec.Retention(); r > 0 {
		cutoff := now.Add(-r).UnixMilli()
		for n < len(segs) && writtenMs(segs[n]) < cutoff {
			n++
		}
	}
	if limit := spec.RetainBytes(); limit > 0 {
		total := int64(0)
		for _, s := range segs {
			total += s.ZBytes
		}
		k := 0
		for k < len(segs) && total-segs[k].ZBytes >= limit {
			total -= segs[k].ZBytes
			k++
		}
		n = max(n, k)
	}
	return min(n, maxRemoveSegments)
}

// writtenMs is when a segment was written; for segments indexed before WrittenMs existed,
// its newest record's timestamp.
func writtenMs(s indexed) int64 {
	if s.WrittenMs > 0 {
		return s.WrittenMs
	}
	return s.MaxTs
}
