package actors

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
)

// partitionLog is an owner's view of its partition's segment index, kept for retention
// and merging (compactor.go). The owner is the only writer of its partition's index, so
// the view is exact: loaded once from etcd, then extended by the writer's own commits and
// changed by the compactor's own rewrites, every one of them fenced on the lease's epoch
// and guarded on the index being as the view says (coordination.Lease.Rewrite).
//
// The partition actor appends commits and reads logStart; the compactor does the rest.
type partitionLog struct {
	p     coordination.Partition
	lease *coordination.Lease
	// recent is the writer's tail of committed records: merges read fresh segments from
	// it instead of the store.
	recent *recentLog
	// changed is called after the index lost segments (readers' caches of it are stale).
	changed func()
	// respec is called when the topic's settings changed (the writer's linger, segment bytes).
	respec func(coordination.TopicSpec)
	log    *zap.Logger

	// logStart is the first offset still indexed (the high-water mark when none is), read
	// at activation and kept by the loads, commits and rewrites since.
	logStart atomic.Int64

	mu      sync.Mutex
	loaded  bool
	loading bool // a load is reading the index: commits meanwhile go to pending
	closed  bool
	segs    []indexed // offset order, adjacent
	// pending are the commits the writer made while a load read the index, which the read
	// may not hold. Commits before a load starts are in its read, and those while no load
	// runs (compaction off, or between a reload and the next pass) are left for the next
	// load to read: kept, they would pile up without bound.
	pending []indexed
	// pendingRev is the latest revision of those commits: the load may read the index
	// before them, and its view is as of both.
	pendingRev int64
	rev        int64 // the index is as segs says at this revision
	spec       coordination.TopicSpec
}

func newPartitionLog(lease *coordination.Lease, logStart int64, spec coordination.TopicSpec, recent *recentLog, log *zap.Logger) *partitionLog {
	l := &partitionLog{p: lease.Partition(), lease: lease, recent: recent, spec: spec, log: log,
		changed: func() {}, respec: func(coordination.TopicSpec) {}}
	l.logStart.Store(logStart)
	return l
}

// committed records a segment the writer committed at revision rev.
func (l *partitionLog) committed(meta coordination.SegmentMeta, stored time.Time, rev int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := indexed{SegmentMeta: meta, stored: stored}
	if !l.loaded {
		if l.loading {
			l.pending = append(l.pending, s)
			l.pendingRev = max(l.pendingRev, rev)
		}
		return
	}
	// The load may have read this commit already: the writer hears of its commits after
	// etcd applied them. Retention may even have removed it since (every segment, when
	// the retention is shorter than the writer's delay): then it is below the log start.
	if n := len(l.segs); n > 0 && meta.Base <= l.segs[n-1].Last || meta.Base < l.logStart.Load() {
		return
	}
	l.segs = append(l.segs, s)
	l.rev = max(l.rev, rev)
}

// close stops the compactor from touching the partition (it moved, or stopped).
func (l *partitionLog) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}

// load reads the index once, at the first compactor pass after activation.
//
// Only the compactor's goroutine loads, reloads and rewrites the view: a second load, or a
// reload, while one reads the index would lose the commits it gathers in pending.
func (l *partitionLog) load(ctx context.Context, c *coordination.Client) error {
	l.mu.Lock()
	loaded := l.loaded
	l.loading = !loaded
	l.mu.Unlock()
	if loaded {
		return nil
	}
	metas, rev, err := c.SegmentRange(ctx, l.p.Topic, l.p.Partition, 0)
	hwm := int64(-1)
	if err == nil && len(metas) == 0 {
		// An empty index starts at the high-water mark of the same revision: a reload
		// after a removal of every segment, whose answer was lost, must not keep the log
		// start from before it.
		hwm, err = c.HWMAt(ctx, l.p.Topic, l.p.Partition, rev)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loading = false
	if err != nil {
		l.pending, l.pendingRev = nil, 0 // the next load reads them
		return fmt.Errorf("load the index of %s: %w", l.p, err)
	}
	l.segs = make([]indexed, 0, len(metas)+len(l.pending))
	for _, m := range metas {
		l.segs = append(l.segs, indexed{SegmentMeta: m})
	}
	next := int64(-1)
	if n := len(l.segs); n > 0 {
		next = l.segs[n-1].Last + 1
	}
	// Commits the writer made after the read are not in it.
	for _, s := range l.pending {
		if s.Base >= next {
			l.segs = append(l.segs, s)
		}
	}
	l.pending, l.loaded, l.rev, l.pendingRev = nil, true, max(rev, l.pendingRev), 0
	switch {
	case len(l.segs) > 0:
		l.logStart.Store(l.segs[0].Base)
	case hwm >= 0:
		l.logStart.Store(max(l.logStart.Load(), hwm))
	}
	return nil
}

// snapshot returns a copy of the view and its revision, unless the log is closed.
func (l *partitionLog) snapshot() ([]indexed, int64, coordination.TopicSpec, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || !l.loaded {
		return nil, 0, l.spec, false
	}
	// A merge lists the requests of segments written within requestMemory (mergedMeta);
	// older segments' lists are only memory. Ages count from the last segment: their
	// times are their writers' clocks, which need not agree with this agent's (a
	// previous owner's running behind had its last requests' lists dropped, and a
	// second failover could not answer their re-sends).
	old := int64(math.MinInt64)
	if n := len(l.segs); n > 0 {
		old = l.segs[n-1].WrittenMs - requestMemory.Milliseconds()
	}
	for i := range l.segs {
		if l.segs[i].WrittenMs < old {
			l.segs[i].Requests = nil
		}
	}
	return append([]indexed(nil), l.segs...), l.rev, l.spec, true
}

// stats returns the view's first offset (the high-water mark when it holds no segment),
// its segments and their stored bytes, and the high-water mark: hwm, the writer's, or
// past the last segment the view holds if the load read a commit the writer has not
// reported yet. ok is false while the view is not loaded (or the log is closed).
func (l *partitionLog) stats(hwm int64) (logStart, segments, stored, highWater int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || !l.loaded {
		return 0, 0, 0, 0, false
	}
	logStart, highWater = hwm, hwm
	if n := len(l.segs); n > 0 {
		logStart, highWater = l.segs[0].Base, max(hwm, l.segs[n-1].Last+1)
	}
	for _, s := range l.segs {
		stored += s.ZBytes
	}
	return logStart, int64(len(l.segs)), stored, highWater, true
}

// setSpec records the topic's current settings; it reports whether they changed.
func (l *partitionLog) setSpec(spec coordination.TopicSpec) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if spec == l.spec || spec.Deleted() {
		return false
	}
	l.spec = spec
	return true
}

// rewritten applies a rewrite that committed at rev: segments [base, last] became with
// (nil: removed by retention).
func (l *partitionLog) rewritten(base, last int64, with *coordination.SegmentMeta, stored time.Time, rev int64) {
	l.mu.Lock()
	i := 0
	for i < len(l.segs) && l.segs[i].Base < base {
		i++
	}
	j := i
	for j < len(l.segs) && l.segs[j].Last <= last {
		j++
	}
	var mid []indexed
	if with != nil {
		mid = []indexed{{SegmentMeta: *with, stored: stored}}
	}
	l.segs = append(l.segs[:i:i], append(mid, l.segs[j:]...)...)
	l.rev = max(l.rev, rev)
	if with == nil {
		l.logStart.Store(last + 1)
	}
	l.mu.Unlock()
	l.changed()
}

// reload forgets the view (a rewrite found the index changed, or may have changed it
// unheard: etcd applied it and its answer was lost): the next pass loads it, and readers
// drop their cached runs of the index, which may name segments no longer in it.
func (l *partitionLog) reload() {
	l.mu.Lock()
	l.loaded, l.segs, l.pending, l.pendingRev = false, nil, nil, 0
	l.mu.Unlock()
	l.changed()
}
