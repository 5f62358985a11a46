package actors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

// DefaultCompactInterval is how often an agent applies retention to its partitions and
// merges their small segments (NodeConfig.CompactInterval). A pass with nothing due reads
// only memory, so passes can be frequent: a quiet partition's segments are merged within
// a second of their commit, and retention removes segments within a second of their
// expiry. Busy partitions' merges wait for enough segments whatever the interval, or
// until their partition has been quiet for MergeHoldMax (mergeplan.go).
const DefaultCompactInterval = time.Second

// mergeReaders bounds the concurrent GETs of a pass.
const mergeReaders = 4

// maxReadGap: segments of one object that a pass needs are read with one GET when the
// bytes between them (other partitions' segments) are at most this many. A GET per
// segment costs a request; a GET across others' segments costs their bytes, and memory
// until the pass is done with it.
const maxReadGap = 64 << 10

// maxMergeObjectBytes bounds the input of one merge object (at least one merge), and so
// the memory a pass takes; a pass writes as many as its due merges need.
const maxMergeObjectBytes = 32 << 20

// freshRemoval: a rewrite that takes out only segments whose objects this agent wrote
// less than freshRemoval before sending it leaves no tombstone. Their objects' own age
// keeps them from the sweeper for its grace minus freshRemoval, the rewrite's commit
// timeout, the upload's (an object's time may be its PUT's start) and clock skew, which
// still outlasts any read that resolved them before (TestRemovalGraceOutlastsReads). Most
// merges are of fresh segments, so tombstones stay few.
const freshRemoval = 30 * time.Second

// DefaultMergeLinkBytes: a merge whose segments are all stored in pieces of at least
// this many bytes links them (NodeConfig.MergeLinkBytes): the merged segment's index
// entry lists those pieces where they are (coordination.SegmentMeta.Parts), and no byte
// is read or written again. A catch-up read takes such a piece with one GET, as it would
// from a copy, and the index costs ~150 bytes of etcd (and of the owner's memory) per
// piece: at most ~300 bytes per MiB of data, against ~4 KiB per GiB for segments copied to
// the default 64 MiB (an entry of ~240 bytes). Smaller pieces are copied into one stored
// segment. At the maximum rate segments are about 1.1 MB (a request's worth), so what a
// busy partition writes is linked and written once (docs/benchmarks-history.md, run 15).
const DefaultMergeLinkBytes = 512 << 10

// maxLinkParts bounds the parts of a linked segment: its index value (~150 bytes a part)
// and what a reader caches of it. A merge that would link more copies instead.
const maxLinkParts = 128

// compactor applies retention and merges segments for every partition its agent owns
// (DESIGN.md §3 "bounded metadata"; the policy is in mergeplan.go). Each pass it loads the
// index of newly activated partitions, removes expired segments, and writes the merges of
// every partition that has some into one object, then swaps each partition's index, each
// in its own transaction fenced on that partition's epoch. So an agent writes one merge
// object per pass however many partitions it owns.
//
// A crash anywhere leaves a consistent index: before the swap the merged object is an
// orphan, after it the merged-away objects are unindexed, and the sweeper deletes both
// kinds after their grace.
type compactor struct {
	client   *coordination.Client
	store    objstore.Store
	mirror   *coordination.Mirror
	names    *flusher // object names
	interval time.Duration
	upload   time.Duration // bounds the PUT, and each GET of a merge's inputs
	commit   time.Duration // bounds the swaps, from the end of the PUT
	segment  segmentstore.Options
	// linkBytes is the smallest piece a merge links (DefaultMergeLinkBytes); 0 or less:
	// merges copy always.
	linkBytes int64
	log       *zap.Logger

	mu   sync.Mutex
	logs map[*partitionLog]bool
}

// mergeJob is one partition's merge in a pass.
type mergeJob struct {
	log  *partitionLog
	old  []indexed
	size int64 // stored bytes of old
	rev  int64
	// in are the stored segments of old (a linked one's parts, each on its own), which
	// the merge reads; recent holds the records of in[i] when the partition still has
	// them in memory; stored its bytes as stored, from memory or read from the store.
	in     []indexed
	recent [][]segmentstore.Record
	stored [][]byte
	// parts are the merged segment's bytes, in order: pieces of stored (ConcatParts) or
	// one re-encoded buffer.
	parts [][]byte
	meta  coordination.SegmentMeta
}

func (c *compactor) add(l *partitionLog) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.logs == nil {
		c.logs = map[*partitionLog]bool{}
	}
	c.logs[l] = true
}

func (c *compactor) remove(l *partitionLog) {
	l.close()
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.logs, l)
}

func (c *compactor) partitions() []*partitionLog {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*partitionLog, 0, len(c.logs))
	for l := range c.logs {
		out = append(out, l)
	}
	return out
}

// run makes a pass every interval until ctx ends.
//
// With compaction off (a negative interval) it still passes the topics' settings that
// `streamctl topic alter` changed on to their partitions (a new linger, segment size)
// every DefaultCompactInterval, as each compaction pass does.
func (c *compactor) run(ctx context.Context) {
	every := c.interval
	if every <= 0 {
		every = DefaultCompactInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.interval <= 0 {
			for _, l := range c.partitions() {
				c.respec(l)
			}
			continue
		}
		start := time.Now()
		c.pass(ctx)
		metricCompactionPass.Observe(time.Since(start).Seconds())
	}
}

// respec passes the topic's settings on to l's partition if they changed.
func (c *compactor) respec(l *partitionLog) {
	if spec, ok := c.mirror.Topic(l.p.Topic); ok && l.setSpec(spec) {
		l.respec(spec)
	}
}

func (c *compactor) pass(ctx context.Context) {
	now := time.Now()
	var jobs []*mergeJob
	keys := map[string]int{}
	for _, l := range c.partitions() {
		if ctx.Err() != nil {
			return
		}
		if err := l.load(ctx, c.client); err != nil {
			l.log.Warn("compaction: index not loaded", zap.Error(err))
			continue
		}
		c.respec(l)
		segs, rev, spec, ok := l.snapshot()
		if !ok {
			continue
		}
		keys[l.p.Topic] += len(segs)
		if n := planExpiry(segs, spec, now); n > 0 {
			c.expire(ctx, l, segs[:n], rev)
			continue // merge from the new view next pass
		}
		for _, sp := range planMerges(segs, spec.MergeTarget(), now) {
			old := segs[sp.i:sp.j]
			if c.linkable(old) {
				c.link(ctx, l, old, rev, now)
				continue
			}
			j := &mergeJob{log: l, old: old, in: storedPieces(old), rev: rev}
			for _, s := range j.old {
				j.size += s.ZBytes
			}
			jobs = append(jobs, j)
		}
	}
	metricIndexSegments.Reset() // topics whose partitions all moved away report nothing here
	for topic, n := range keys {
		metricIndexSegments.WithLabelValues(topic).Set(float64(n))
	}
	// Every merge due, the cheapest first (fresh segments: the most keys for the least
	// work never wait behind a large merge), in objects of up to maxMergeObjectBytes of
	// input (at least one merge each), which bounds the memory a pass takes.
	sort.SliceStable(jobs, func(a, b int) bool { return jobs[a].size < jobs[b].size })
	for len(jobs) > 0 && ctx.Err() == nil {
		budget, n := int64(maxMergeObjectBytes), 0
		for n < len(jobs) && (n == 0 || jobs[n].size <= budget) {
			budget -= jobs[n].size
			n++
		}
		c.merge(ctx, jobs[:n])
		jobs = jobs[n:]
	}
}

// expire takes old, the oldest segments of l, out of the index.
func (c *compactor) expire(ctx context.Context, l *partitionLog, old []indexed, rev int64) {
	last := old[len(old)-1]
	cctx, cancel := context.WithTimeout(ctx, c.commit)
	defer cancel()
	crev, err := l.lease.Rewrite(cctx, metas(old), rev, nil, tombstoneOf(old, coordination.RemovedByRetention, time.Now()))
	if !c.settle(l, err, "retention") {
		return
	}
	var bytes int64
	for _, s := range old {
		bytes += s.ZBytes
	}
	l.rewritten(old[0].Base, last.Last, nil, time.Time{}, crev)
	metricRetentionSegments.WithLabelValues(l.p.Topic).Add(float64(len(old)))
	metricRetentionBytes.WithLabelValues(l.p.Topic).Add(float64(bytes))
	l.log.Info("retention removed segments", zap.Int64("from", old[0].Base), zap.Int64("to", last.Last),
		zap.Int("segments", len(old)), zap.Int64("bytes", bytes), zap.Int64("log_start", last.Last+1))
}

// linkable reports whether a merge of old links its pieces rather than copying them:
// each is at least linkBytes, and there are at most maxLinkParts.
func (c *compactor) linkable(old []indexed) bool {
	if c.linkBytes <= 0 {
		return false
	}
	n := 0
	for i := range old {
		for _, pc := range old[i].Pieces() {
			if pc.ZBytes < c.linkBytes {
				return false
			}
			n++
		}
	}
	return n <= maxLinkParts
}

// link merges old by reference: one index entry listing their pieces where they are
// stored replaces theirs, in a rewrite fenced on the partition's epoch like a copy's.
// No object leaves the index, so there is no tombstone.
func (c *compactor) link(ctx context.Context, l *partitionLog, old []indexed, rev int64, now time.Time) {
	meta := mergedMeta(l, old)
	stored := now // the oldest piece's upload: how old the linked segment's objects are
	for i := range old {
		meta.Parts = append(meta.Parts, old[i].Pieces()...)
		meta.ZBytes += old[i].ZBytes
		if old[i].stored.IsZero() || old[i].stored.Before(stored) {
			stored = old[i].stored
		}
	}
	cctx, cancel := context.WithTimeout(ctx, c.commit)
	defer cancel()
	crev, err := l.lease.Rewrite(cctx, metas(old), rev, &meta, nil)
	if !c.settle(l, err, "merge") {
		return
	}
	crashPoint("link-swap")
	l.rewritten(meta.Base, meta.Last, &meta, stored, crev)
	metricMergeMethod.WithLabelValues(mergeLink).Inc()
	metricMerges.WithLabelValues(resultOK).Inc()
	metricMergedSegments.WithLabelValues(l.p.Topic).Add(float64(len(old)))
	l.log.Debug("segments linked", zap.Int64("from", meta.Base), zap.Int64("to", meta.Last),
		zap.Int("segments", len(old)), zap.Int("parts", len(meta.Parts)), zap.Int64("bytes", meta.ZBytes), zap.Int64("revision", crev))
}

// mergedMeta is the index entry of old merged, but for where it is stored. old is of a
// snapshot of the partition's log, which kept the request lists of its recent segments
// only.
func mergedMeta(l *partitionLog, old []indexed) coordination.SegmentMeta {
	first, last := old[0], old[len(old)-1]
	meta := coordination.SegmentMeta{Base: first.Base, Last: last.Last, MinTs: first.MinTs, MaxTs: first.MaxTs, Epoch: l.lease.Epoch()}
	for _, s := range old {
		meta.Records += s.Records
		meta.Bytes += s.Bytes
		meta.MinTs, meta.MaxTs = min(meta.MinTs, s.MinTs), max(meta.MaxTs, s.MaxTs)
		meta.WrittenMs = max(meta.WrittenMs, s.WrittenMs)
		// A partition's next owner may still be asked for them (requestLog).
		meta.Requests = append(meta.Requests, s.Requests...)
	}
	// The newest: those whose answers a failover may have lost are the last written.
	// The list stays in etcd as long as the merged segment (nothing rewrites a segment
	// of half a merge target or more), so it is held to a segment's.
	if n := len(meta.Requests); n > maxSegmentRequests {
		meta.Requests = slices.Clone(meta.Requests[n-maxSegmentRequests:])
	}
	return meta
}

// storedPieces returns segs with each linked segment replaced by its parts, as the
// stored segments they are (their times are the linked segment's).
func storedPieces(segs []indexed) []indexed {
	out := make([]indexed, 0, len(segs))
	for _, s := range segs {
		if len(s.Parts) == 0 {
			out = append(out, s)
			continue
		}
		for _, pc := range s.Parts {
			m := s.SegmentMeta
			m.Parts = nil
			m.Object, m.Offset, m.ZBytes, m.Base, m.Last, m.Records, m.Bytes = pc.Object, pc.Offset, pc.ZBytes, pc.Base, pc.Last, pc.Records, pc.Bytes
			out = append(out, indexed{SegmentMeta: m, stored: s.stored})
		}
	}
	return out
}

// merge encodes every job's merged segment into one object, writes it, and swaps each
// partition's index.
func (c *compactor) merge(ctx context.Context, jobs []*mergeJob) {
	object := c.names.nextName()
	if err := c.fetch(ctx, jobs); err != nil {
		metricMerges.WithLabelValues(resultError).Add(float64(len(jobs)))
		c.log.Warn("merges skipped: cannot read their segments", zap.Error(err))
		return
	}
	kept := jobs[:0]
	size := int64(0)
	for _, j := range jobs {
		if err := c.build(j); err != nil {
			metricMerges.WithLabelValues(resultError).Inc()
			j.log.log.Warn("merge skipped: cannot read its segments", zap.Int64("from", j.old[0].Base), zap.Error(err))
			continue
		}
		j.meta.Object, j.meta.Offset = object, size
		size += j.meta.ZBytes
		kept = append(kept, j)
	}
	if len(kept) == 0 {
		return
	}
	// The merged segments are written as the pieces they are made of (a merge by
	// ConcatParts is mostly its inputs' blocks), not copied into one buffer first.
	var parts [][]byte
	for _, j := range kept {
		parts = append(parts, j.parts...)
		j.parts = nil
	}
	uctx, cancel := context.WithTimeout(ctx, c.upload)
	err := c.store.Put(uctx, object, parts...)
	cancel()
	putDone := time.Now()
	if err != nil {
		metricMerges.WithLabelValues(resultError).Add(float64(len(kept)))
		c.log.Warn("merge object not written", zap.String("object", object), zap.Int64("bytes", size), zap.Error(err))
		return
	}
	metricObjects.Inc()
	crashPoint("merge-put")
	// As for the writer's commits: no swap later than the commit timeout after the PUT, so
	// that the sweeper can tell an orphan merge object by its age.
	cctx, cancel := context.WithDeadline(ctx, putDone.Add(c.commit))
	defer cancel()
	for _, j := range kept {
		rev, err := j.log.lease.Rewrite(cctx, metas(j.old), j.rev, &j.meta, tombstoneOf(j.old, coordination.RemovedByMerge, time.Now()))
		if !c.settle(j.log, err, "merge") {
			continue
		}
		crashPoint("merge-swap")
		j.log.rewritten(j.meta.Base, j.meta.Last, &j.meta, putDone, rev)
		metricMerges.WithLabelValues(resultOK).Inc()
		metricMergedSegments.WithLabelValues(j.log.p.Topic).Add(float64(len(j.old)))
		metricMergedBytes.WithLabelValues(j.log.p.Topic).Add(float64(j.meta.ZBytes))
		j.log.log.Debug("segments merged", zap.Int64("from", j.meta.Base), zap.Int64("to", j.meta.Last),
			zap.Int("segments", len(j.old)), zap.Int64("bytes", j.meta.ZBytes), zap.String("object", object), zap.Int64("revision", rev))
	}
}

// settle handles the outcome of a rewrite; true means it committed.
func (c *compactor) settle(l *partitionLog, err error, what string) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, coordination.ErrFenced):
		// The partition has a new owner; its writer finds out at its next commit.
		l.close()
		metricMerges.WithLabelValues(resultFenced).Inc()
	case errors.Is(err, coordination.ErrIndexChanged):
		l.reload()
		metricMerges.WithLabelValues(resultError).Inc()
		l.log.Warn(what+": the index is not as this owner saw it; reloading", zap.Error(err))
	default:
		// Unknown outcome (etcd unreachable): read the index again before the next try.
		l.reload()
		metricMerges.WithLabelValues(resultError).Inc()
		l.log.Warn(what+" not committed", zap.Error(err))
	}
	return false
}

// minConcatBytes: segments of at least this many record bytes have blocks worth keeping
// as they are (about half the default block size or more).
const minConcatBytes = segmentstore.DefaultBlockSize / 2

// fetch finds, for every job, each segment's stored bytes and records in the partition's
// recent memory, and reads the segments found there in neither from the store, with the
// ranged GETs of planReads.
func (c *compactor) fetch(ctx context.Context, jobs []*mergeJob) error {
	type need struct {
		j *mergeJob
		i int
	}
	var needs []need
	var segs []indexed
	for _, j := range jobs {
		j.recent = make([][]segmentstore.Record, len(j.in))
		j.stored = make([][]byte, len(j.in))
		for i, s := range j.in {
			j.stored[i], _ = j.log.recent.encoded(s.Base, s.Last)
			if recs, whole := recentSegment(j.log.recent, s); whole {
				j.recent[i] = recs // else read from the store: a part would not make the segment
			}
			if j.stored[i] == nil && j.recent[i] == nil {
				needs = append(needs, need{j, i})
				segs = append(segs, s)
			}
		}
	}
	runs, runOf := planReads(segs, maxReadGap)
	// A few GETs at a time: a pass that fell behind reads many small objects.
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, mergeReaders)
	var wg sync.WaitGroup
	for _, r := range runs {
		sem <- struct{}{}
		wg.Add(1)
		goroutines.Go(func() {
			defer func() { <-sem; wg.Done() }()
			// Bounded as the merge's PUT is, which writes about as many bytes: a GET that
			// stalls mid-body (a half-open connection) would hold the pass, and with it
			// retention and merges of every partition of the agent, until TCP gave up.
			gctx, cancel := context.WithTimeout(ctx, c.upload)
			b, err := c.store.GetRange(gctx, r.object, r.lo, r.hi-r.lo)
			cancel()
			if err == nil && int64(len(b)) != r.hi-r.lo {
				err = fmt.Errorf("got %d bytes", len(b))
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("read %s [%d, %d): %w", r.object, r.lo, r.hi, err)
			}
			r.data = b
		})
		metricMergeReads.Inc()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	for k, n := range needs {
		s, r := segs[k], runOf[k]
		n.j.stored[n.i] = r.data[s.Offset-r.lo : s.Offset-r.lo+s.ZBytes]
	}
	return nil
}

// readRun is one ranged GET of a pass: bytes [lo, hi) of object.
type readRun struct {
	object string
	lo, hi int64
	data   []byte
}

// planReads plans the GETs that read segs: fresh segments of several partitions share
// objects, and those of one object are read with one GET per run of them whose gaps
// (other partitions' segments) are at most gap bytes, so that a pass reads neither an
// object twice nor much that it does not need. runOf[k] is the run that holds segs[k].
func planReads(segs []indexed, gap int64) (runs []*readRun, runOf []*readRun) {
	order := make([]int, len(segs))
	for k := range order {
		order[k] = k
	}
	sort.Slice(order, func(a, b int) bool {
		sa, sb := segs[order[a]], segs[order[b]]
		if sa.Object != sb.Object {
			return sa.Object < sb.Object
		}
		return sa.Offset < sb.Offset
	})
	runOf = make([]*readRun, len(segs))
	var r *readRun
	for _, k := range order {
		s := segs[k]
		if r == nil || r.object != s.Object || s.Offset > r.hi+gap {
			r = &readRun{object: s.Object, lo: s.Offset, hi: s.Offset}
			runs = append(runs, r)
		}
		r.hi = max(r.hi, s.Offset+s.ZBytes)
		runOf[k] = r
	}
	return runs, runOf
}

// build makes a job's merged segment. Segments whose stored bytes are at hand (kept in
// memory since their upload, or read from the store) and whose blocks have a good size
// are joined as they are, block by block (segmentstore.ConcatParts: no decompression,
// no re-encoding, no copy); otherwise the records (from memory, or decoded) are encoded afresh, which
// also joins the tiny blocks of a quiet partition's segments.
func (c *compactor) build(j *mergeJob) error {
	p, first, last := j.log.p, j.old[0], j.old[len(j.old)-1]
	meta := mergedMeta(j.log, j.old)
	concat := true
	for i, s := range j.in {
		concat = concat && s.Bytes >= minConcatBytes && j.stored[i] != nil
	}
	var parts [][]byte
	var err error
	method := mergeEncode
	if concat {
		method = mergeConcat
		parts, err = segmentstore.ConcatParts(j.stored)
	} else {
		var data []byte
		data, err = c.reencode(j)
		parts = [][]byte{data}
	}
	if err != nil {
		return fmt.Errorf("%s [%d, %d]: %w", p, first.Base, last.Last, err)
	}
	// The result must describe exactly the run the index says it replaces. Its first
	// part holds its header (all of it, when ConcatParts made it; a shorter one than
	// this partition's topic needs fails to parse).
	hdr := parts[0][:min(len(parts[0]), (&segmentstore.Header{Topic: p.Topic}).Len())]
	h, err := segmentstore.ParseHeader(hdr)
	if err != nil || h.Topic != p.Topic || h.Partition != p.Partition || h.BaseOffset != meta.Base || h.LastOffset != meta.Last || int64(h.Records) != meta.Records {
		return fmt.Errorf("%s [%d, %d]: merged segment holds %s/%d [%d, %d] %d records, want %d records (%v)",
			p, meta.Base, meta.Last, h.Topic, h.Partition, h.BaseOffset, h.LastOffset, h.Records, meta.Records, err)
	}
	for _, b := range parts {
		meta.ZBytes += int64(len(b))
	}
	j.parts, j.meta, j.in, j.recent, j.stored = parts, meta, nil, nil, nil
	metricMergeMethod.WithLabelValues(method).Inc()
	return nil
}

// reencode encodes j's records, from memory or decoded from their stored bytes, as one
// segment.
func (c *compactor) reencode(j *mergeJob) ([]byte, error) {
	p := j.log.p
	enc, err := segmentstore.NewEncoder(p.Topic, p.Partition, j.in[0].Base, c.segment)
	if err != nil {
		return nil, err
	}
	for i, s := range j.in {
		recs := j.recent[i]
		if recs == nil {
			seg, err := segmentstore.Decode(j.stored[i])
			if err != nil {
				return nil, fmt.Errorf("segment [%d, %d] in %s: %w", s.Base, s.Last, s.Object, err)
			}
			recs = seg.Records
			if int64(len(recs)) != s.Records || recs[0].Offset != s.Base || recs[len(recs)-1].Offset != s.Last {
				return nil, fmt.Errorf("segment [%d, %d] in %s holds %d records, not the %d its meta names", s.Base, s.Last, s.Object, len(recs), s.Records)
			}
		}
		for k := range recs {
			if err := enc.Append(&recs[k]); err != nil {
				return nil, fmt.Errorf("segment [%d, %d]: %w", s.Base, s.Last, err)
			}
		}
	}
	return enc.Finish()
}

// recentSegment returns the records of segment s from a partition's recent records, if
// they are all there.
func recentSegment(r *recentLog, s indexed) ([]segmentstore.Record, bool) {
	recs, ok := r.read(s.Base, int(s.Bytes))
	if !ok || len(recs) == 0 || recs[0].Offset != s.Base {
		return nil, false
	}
	n := 0
	for n < len(recs) && recs[n].Offset <= s.Last {
		n++
	}
	return recs[:n], int64(n) == s.Records
}

func metas(segs []indexed) []coordination.SegmentMeta {
	out := make([]coordination.SegmentMeta, len(segs))
	for i, s := range segs {
		out[i] = s.SegmentMeta
	}
	return out
}

// tombstoneOf names the objects of old for the sweeper, unless they are all fresh at now,
// which is when the rewrite is sent (not when its pass began: a pass's reads and PUTs
// before it have no bound), so that it lands at most the commit timeout later.
func tombstoneOf(old []indexed, reason string, now time.Time) *coordination.Tombstone {
	fresh := true
	for _, s := range old {
		fresh = fresh && !s.stored.IsZero() && now.Sub(s.stored) < freshRemoval
	}
	if fresh {
		return nil
	}
	return &coordination.Tombstone{Objects: coordination.ObjectsOf(metas(old)), Reason: reason}
}
