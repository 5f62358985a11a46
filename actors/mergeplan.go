package actors

import (
	"time"

	"github.com/streamhouse/streamhouse/coordination"
)

// Merge policy (docs/operations.md "Retention and merging"). Segments smaller than half
// the topic's merge target are "small". A busy partition's run of adjacent small segments
// (its newest ones of some size, lazyMinSegment, and fresh) is left alone until it holds
// half a target's bytes or more than lazyKeys segments: at a high rate, fresh segments
// then make a full-size one in a single merge and every record is rewritten once (`make
// soak` at 6000 records/s: 1.88 bytes merged per byte, against 2.45 when fresh segments
// were merged every pass with a fan-in of 4; docs/operations.md). In a run that is due, a
// merge starts at the first segment that is at most 1/mergeFanIn of everything after it
// in the run, or that makes a full-size segment with what follows, and takes segments up
// to the merge target: so a slow partition's segments merge in size classes, a merged
// segment again only once mergeFanIn times its size has gathered behind it, and a
// partition keeps at most lazyKeys small segments plus a few per size class and the ones
// committed since the last pass, whatever its rate.
const (
	mergeFanIn = 16
	// minMergeSegments: fewer segments than this are not worth a rewrite.
	minMergeSegments = 4
	// maxMergeSegments bounds one merge (the tombstone names at most this many objects).
	maxMergeSegments = 2000
	// lazyKeys, lazyMinSegment: a run of small segments whose newest ones average
	// lazyMinSegment bytes or more is left alone until it holds half a merge target's
	// bytes or more than lazyKeys segments (or stops growing, MergeHoldMax). Merging such
	// runs once rather than every pass saves a rewrite of every record at high rates
	// (fresh segments make a full-size one in one merge); lazyKeys bounds the keys a busy
	// partition gathers first. Runs of tinier segments (a quiet partition's) are merged as
	// they come: their rewrites cost little, and their keys would be most of an etcd with
	// many quiet partitions.
	lazyKeys       = 256
	lazyMinSegment = 8 << 10
	// lazyTail: the newest segments whose size says whether a partition is busy now.
	lazyTail = 16
	// maxRemoveSegments bounds the segments one retention rewrite removes (and
	// coordination.MaxTombstoneBytes the objects its tombstone names).
	maxRemoveSegments = 2000
)

// MergeHoldMax is the longest a busy partition's fresh segments are held back from
// merging after its last write: a run whose newest segment is older than this is merged
// as it is (a benchmark waits this long for the merges a phase caused).
const MergeHoldMax = 30 * time.Second

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
func planMerges(segs []indexed, target int64, now time.Time) []span {
	small := target / 2
	keep := resendable(segs)
	var out []span
	for a := 0; a < len(segs); {
		if segs[a].ZBytes >= small {
			a++
			continue
		}
		b, bytes := a, int64(0)
		for b < len(segs) && segs[b].ZBytes < small {
			bytes += segs[b].ZBytes
			b++
		}
		if b-a <= lazyKeys && bytes < small && busy(segs[a:b], now) {
			a = b
			continue
		}
		for from := a; from < b; {
			i, j, ok := planRun(segs[from:b], target, keep-from)
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

// busy reports whether a run of small segments is a busy partition's fresh ones, which may
// wait for more: its newest lazyTail segments average lazyMinSegment or more (earlier,
// merged segments do not count: a partition that turned quiet merges at once), and the
// newest was written less than MergeHoldMax ago (a partition that stopped does not keep
// its run unmerged).
func busy(run []indexed, now time.Time) bool {
	tail := run[max(0, len(run)-lazyTail):]
	bytes := int64(0)
	for _, s := range tail {
		bytes += s.ZBytes
	}
	return bytes >= int64(len(tail))*lazyMinSegment && now.UnixMilli()-writtenMs(run[len(run)-1]) < MergeHoldMax.Milliseconds()
}

// planRun applies the policy to a run of small segments: the first merge due in it. The
// request ids of the run's segments from keep on must be kept (resendable).
func planRun(run []indexed, target int64, keep int) (int, int, bool) {
	after := int64(0) // bytes after segment i in the run
	for _, s := range run {
		after += s.ZBytes
	}
	for i := range run {
		after -= run[i].ZBytes
		// Due when enough has gathered behind it, or when it and what follows make a
		// full-size segment (a merged segment above target/mergeFanIn would otherwise wait
		// for more than one merge can take).
		if run[i].ZBytes*mergeFanIn > after && run[i].ZBytes+after < target/2 {
			continue
		}
		size, j := int64(0), i
		for j < len(run) && j-i < maxMergeSegments && (j == i || size+run[j].ZBytes <= target) {
			size += run[j].ZBytes
			j++
		}
		// A copy merge's tombstone names every object of the run (a linked segment's
		// pieces each): no more than one etcd request holds.
		if k := i + coordination.SegmentsWithinTombstone(metas(run[i:j])); k < j {
			j, size = k, 0
			for _, s := range run[i:j] {
				size += s.ZBytes
			}
		}
		if k := i + requestsKept(run[i:j], keep-i); k < j {
			j, size = k, 0
			for _, s := range run[i:j] {
				size += s.ZBytes
			}
		}
		// Few segments are worth a rewrite only when they make a full-size one.
		if j-i >= minMergeSegments || (j-i >= 2 && size >= target/2) {
			return i, j, true
		}
	}
	return 0, 0, false
}

// resendable returns the index of the first of segs whose request ids
// (coordination.SegmentMeta.Requests) a merge must keep: the newest segments, as many as
// a partition's next owner reads to answer re-sends (requestLog.restore: at most
// recentSegments segments, until it has maxRememberedPerPartition ids, some of the
// oldest of them maybe). A segment written more than requestMemory before the newest has
// none left (partitionLog.snapshot), and costs a merge nothing to keep.
func resendable(segs []indexed) int {
	k, ids := len(segs), 0
	for k > 0 && len(segs)-k < recentSegments && ids < maxRememberedPerPartition {
		ids += len(segs[k-1].Requests)
		k--
	}
	return k
}

// requestsKept is how many of run's first segments one merge may take while it keeps the
// request ids of the run's segments from keep on (resendable): a merged segment keeps its
// newest maxSegmentRequests ids (mergedMeta), so the ids it drops must all be of segments
// before keep. Before, merges of fresh segments dropped them: after a failover, a re-send
// of a request whose id went was written again.
func requestsKept(run []indexed, keep int) int {
	keep = max(keep, 0)
	before, total := 0, 0 // ids of the segments before keep, and of all so far
	for k, s := range run {
		if k == keep {
			before = total
		}
		total += len(s.Requests)
		if k >= keep && total-maxSegmentRequests > before {
			return k
		}
	}
	return len(run)
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
	n = min(n, maxRemoveSegments)
	return coordination.SegmentsWithinTombstone(metas(segs[:n]))
}

// writtenMs is when a segment was written; for segments indexed before WrittenMs existed,
// its newest record's timestamp.
func writtenMs(s indexed) int64 {
	if s.WrittenMs > 0 {
		return s.WrittenMs
	}
	return s.MaxTs
}
