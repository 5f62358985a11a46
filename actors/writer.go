package actors

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

// Writer errors, as the partition actor maps them to client codes (see also errors.go).
var (
	// ErrUnavailable: the partition cannot take the request now (an upload failed and the
	// writer is resetting, or it is stopping), or a commit's outcome is unknown. Nothing
	// was acked, but records may have been written (a commit that timed out may have
	// been applied): a retry under the request's id (partitionpb.ProduceRequest.RequestId)
	// is answered with their offsets, not written twice.
	ErrUnavailable = errors.New("actors: partition unavailable")
	// ErrExpired: a produce request the partition held while it started for longer than
	// its sender waited; it is refused, not written. It matches ErrUnavailable.
	ErrExpired = fmt.Errorf("%w: request held past its sender's wait", ErrUnavailable)
	// ErrBackpressure: too many bytes are accepted but not yet acked.
	ErrBackpressure = errors.New("actors: partition backpressure")
)

// Upload and commit time bounds. Together they bound how long after its PUT a segment
// can still be committed, which the orphan sweeper's grace period must exceed
// (sweeper.MinGrace; TestSweeperGraceOutlastsCommits). An upload holds its partition's
// recovery after a failed one (the writer waits for its uploads before it reuses their
// offsets), so its bound is what a stuck connection may cost: an object of at most 16 MiB
// takes well under a second to a store nearby.
const (
	DefaultUploadTimeout = 20 * time.Second
	DefaultCommitTimeout = 30 * time.Second
)

// writerConfig configures a partition writer. Zero fields take the documented defaults.
type writerConfig struct {
	Lease *coordination.Lease // required
	Store objstore.Store      // required unless Flusher is set
	// Flusher writes the segments to the store, with other partitions' in one object.
	// Default: a flusher of this writer's own over Store.
	Flusher *flusher
	// Linger and SegmentBytes come from the topic spec: a batch is sealed when its records
	// reach SegmentBytes or Linger after its first record, whichever comes first.
	Linger       time.Duration
	SegmentBytes int64
	// MaxInFlight bounds concurrent segment uploads. Default DefaultMaxUploads.
	MaxInFlight int
	// Pending bounds what records accepted but not yet acked hold (batch.held), over
	// every writer that shares it (the agent's partitions); beyond it Append answers
	// ErrBackpressure.
	// Default: a budget of this writer's own of DefaultMaxPendingBytes.
	Pending *budget
	// Recent bounds the committed records kept in memory for tail reads, over every
	// writer that shares it (the agent's oldest batches go first). Default: a cache of
	// this writer's own of DefaultRecentBytes.
	Recent *recentCache
	// CommitTimeout bounds the time from a segment's upload to the end of its commit,
	// retries included. Default DefaultCommitTimeout.
	CommitTimeout time.Duration
	// UploadTimeout bounds one upload, the store's retries included. Default
	// DefaultUploadTimeout.
	UploadTimeout time.Duration
	// Segment tunes the segment encoder (block size). Default: segmentstore defaults.
	Segment segmentstore.Options
	Now     func() time.Time
	Log     *zap.Logger
	// notify, when set, is called after each posted result, to wake the actor.
	notify func()
	// Producers is the partition's idempotent producer state as last committed.
	Producers coordination.ProducerStates
	// onCommit, when set, learns every segment committed: its meta, when its object was
	// written, and the revision of the commit (the partition's log, for retention and
	// merging).
	onCommit func(meta coordination.SegmentMeta, stored time.Time, rev int64)
}

func (c writerConfig) withDefaults() writerConfig {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxUploads
	}
	if c.Pending == nil {
		c.Pending = newBudget(DefaultMaxPendingBytes)
	}
	if c.Recent == nil {
		c.Recent = newRecentCache(DefaultRecentBytes)
	}
	if c.CommitTimeout <= 0 {
		c.CommitTimeout = DefaultCommitTimeout
	}
	if c.UploadTimeout <= 0 {
		c.UploadTimeout = DefaultUploadTimeout
	}
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = coordination.DefaultSegmentBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Flusher == nil {
		c.Flusher = newFlusher(c.Store, "writer", DefaultMaxUploads, c.UploadTimeout)
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	return c
}

// produceResult answers one Append: records [Base, Base+Count) are durable and indexed, or
// Err says why none of them is.
type produceResult struct {
	Base  int64
	Count int
	Err   error
}

// idempotence is an idempotent producer's batch: its producer id, epoch and first
// sequence number.
type idempotence struct {
	id       int64
	epoch    int16
	firstSeq int32
	follows  bool // partitionpb.ProduceRequest.Follows
}

type waiter struct {
	reply    func(produceResult)
	producer int64  // an idempotent producer's id, 0 for others
	request  uint64 // the request's id, 0 for none
	base     int64
	count    int
	bytes    int64
	accepted time.Time
}

type batchState int

const (
	sealed     batchState = iota // waiting for an upload slot
	uploading                    // encode + Put running
	uploaded                     // in the store, waiting for its turn to commit
	committing                   // commit transaction running
)

// batch is a run of records that becomes one segment.
type batch struct {
	seq     int64 // distinguishes batches for linger timers
	base    int64
	records []segmentstore.Record
	bytes   int64 // the records' payload
	headers int64 // the records' headers
	held    int64 // what they hold in the pending budget (pendingBytes)
	waiters []waiter
	state   batchState
	meta    coordination.SegmentMeta
	// When the batch entered each stage, for streamhouse_produce_stage_seconds.
	opened, sealed, uploaded, committing time.Time // uploaded: when the PUT completed
	// evicted is set once a committed batch has left its partition's recent log.
	evicted atomic.Bool
	// encoded is the segment as stored, kept while the batch is in its partition's recent
	// log so that a merge can join it without reading it back or encoding it again.
	encoded []byte
	// producerIDs are the idempotent producers whose records are in it: its commit
	// stores their states (producers, taken when the commit starts).
	producerIDs map[int64]struct{}
	producers   coordination.ProducerChanges
	// requests are its waiters' request ids, for its index entry (taken when it is
	// sealed, on the writer's goroutine); identified counts the waiters that have one.
	requests   []coordination.RequestRef
	identified int
}

// memBytes is what a committed batch holds in memory: its records (pendingBytes) and
// its encoded segment.
func (b *batch) memBytes() int64 {
	return pendingBytes(b.bytes, int64(len(b.records)), b.headers) + int64(len(b.encoded))
}

// maxSegmentRequests bounds the requests a segment's index entry lists: a segment grown
// while uploads stalled could hold tens of thousands of one-record requests, and its
// entry must stay far below etcd's request limit (1.5 MiB; a listed request is ~55
// bytes of JSON). A batch is sealed once it holds this many requests with an id, so
// that its entry lists every one: a request left out would still be answered once by
// the owner that wrote it, but its next owner would not know it, and would write a
// re-send of it again.
const maxSegmentRequests = 512

// recordOverhead is what an accepted record holds in memory beside its payload: its
// segmentstore.Record in the batch. It counts in the pending budget with the payload, so
// that records of no bytes (a gRPC request may carry 100,000 of them in a few hundred
// KB) are not free.
const recordOverhead = int64(unsafe.Sizeof(segmentstore.Record{}))

// pendingBytes is what records of payload bytes with headers headers hold in the pending
// budget: headers count segmentstore.HeaderOverhead each for the same reason, a request
// of empty headers.
func pendingBytes(payload, records, headers int64) int64 {
	return payload + records*recordOverhead + headers*segmentstore.HeaderOverhead
}

func (b *batch) last() int64 { return b.base + int64(len(b.records)) - 1 }

// Results posted to the inbox by background work.
type (
	lingerFired struct{ seq int64 }
	uploadDone  struct {
		gen            int64
		b              *batch
		data           []byte // the encoded segment
		meta           coordination.SegmentMeta
		encode, upload time.Duration
		stored         time.Time // when the PUT completed
		err            error
	}
	commitDone struct {
		b   *batch
		rev int64
		err error
	}
)

// writer turns appends into fenced, durable segments for one partition and one lease
// (DESIGN.md §5). All its methods run on one goroutine, the partition actor's; encoding,
// uploads and commits run on their own goroutines and report back through the inbox, so
// the owner never blocks on I/O.
//
// Offsets are assigned at Append. Batches upload concurrently (at most MaxInFlight) but
// commit strictly in offset order, one at a time, and a producer is answered only after
// the commit of the batch holding its records. When an upload fails, every batch not yet
// committing fails with ErrUnavailable, the writer waits for its other uploads to finish
// (so that none can later overwrite an object name it reuses), and offsets restart at the
// committed end. A commit that fails (fenced, or etcd unreachable for CommitTimeout) is
// fatal: the writer fails everything and its owner must stop.
type writer struct {
	cfg   writerConfig
	p     coordination.Partition
	epoch int64
	log   *zap.Logger
	in    *inbox

	next      int64 // next offset to assign
	committed int64 // high-water mark committed by this writer
	seq       int64
	gen       int64 // bumped on reset: results of older uploads are dropped
	open      *batch
	sealDue   bool     // the open batch's linger passed while every upload slot was busy
	queue     []*batch // sealed batches in offset order
	inFlight  int      // uploads running, of any generation
	draining  bool     // after a failed upload, until inFlight drops to 0
	pending   int64    // what records accepted and not yet acked or failed hold (batch.held)
	fatal     error    // set once; every later call fails with it
	recent    recentLog
	prod      *producers
	// incompressible: the last segment did not compress, so the next tries LZ4 on one
	// block in a few only (segmentstore.Options.Incompressible).
	incompressible bool
	uploads        int64 // uploads started
}

// probeSegments: a writer whose segments do not compress tries full compression on one
// segment in probeSegments.
const probeSegments = 16

func newWriter(cfg writerConfig, hwm int64) *writer {
	cfg = cfg.withDefaults()
	p := cfg.Lease.Partition()
	w := &writer{
		cfg: cfg, p: p, epoch: cfg.Lease.Epoch(),
		log:  cfg.Log.With(zap.String("topic", p.Topic), zap.Int32("partition", p.Partition), zap.Int64("epoch", cfg.Lease.Epoch())),
		next: hwm, committed: hwm,
		in: newInbox(cfg.notify), prod: newProducers(cfg.Producers),
	}
	w.recent.cache = cfg.Recent
	return w
}

// Signal has a value whenever background results wait for Process.
func (w *writer) Signal() <-chan struct{} { return w.in.signal }

// Committed is the high-water mark this writer has committed (or started from).
func (w *writer) Committed() int64 { return w.committed }

// Assigned is the next offset Append will assign: offsets up to it may be committed
// before the writer hears of it.
func (w *writer) Assigned() int64 { return w.next }

// Append assigns offsets to recs (stamping a zero timestamp with the writer's clock) and
// adds them to the open batch; reply is called once, after their commit or on failure.
// An idempotent producer's batch (idem not nil) is written only if its sequence numbers
// follow the producer's last batch; a retry of a committed batch is answered with the
// offsets it was written at, and writes nothing.
func (w *writer) Append(recs []segmentstore.Record, idem *idempotence, request uint64, reply func(produceResult)) {
	switch {
	case w.fatal != nil:
		reply(produceResult{Err: w.fatal})
		return
	case len(recs) == 0:
		reply(produceResult{Err: fmt.Errorf("%w: no records", ErrInvalidArgument)})
		return
	case w.draining:
		reply(produceResult{Err: fmt.Errorf("%w: %s is recovering from a failed upload", ErrUnavailable, w.p)})
		return
	}
	var producer int64
	if idem != nil {
		producer = idem.id
		verdict, base := w.prod.check(idem.id, idem.epoch, idem.firstSeq, len(recs), idem.follows)
		var err error
		switch verdict {
		case seqDuplicate:
			reply(produceResult{Base: base, Count: len(recs)})
			return
		case seqOlder:
			err = fmt.Errorf("%w: producer %d sequence %d of %s", ErrDuplicateSequence, idem.id, idem.firstSeq, w.p)
		case seqInFlight:
			err = fmt.Errorf("%w: producer %d sequence %d of %s is being written; retry", ErrUnavailable, idem.id, idem.firstSeq, w.p)
		case seqWindowFull:
			err = fmt.Errorf("%w: producer %d has %d batches of %s being written; retry once one is committed", ErrUnavailable, idem.id, producerWindow, w.p)
		case seqOutOfOrder:
			err = fmt.Errorf("%w: producer %d sequence %d of %s does not follow the last one written", ErrOutOfOrderSequence, idem.id, idem.firstSeq, w.p)
		case seqFenced:
			err = fmt.Errorf("%w: producer %d epoch %d of %s", ErrProducerFenced, idem.id, idem.epoch, w.p)
		}
		if err != nil {
			reply(produceResult{Err: err})
			return
		}
	}
	var size, headers int64
	for i := range recs {
		size += int64(recs[i].Size())
		headers += int64(len(recs[i].Headers))
	}
	held := pendingBytes(size, int64(len(recs)), headers)
	if !w.cfg.Pending.take(held) {
		reply(produceResult{Err: fmt.Errorf("%w: the agent has %d bytes waiting to be written (limit %d); %s has %d",
			ErrBackpressure, w.cfg.Pending.used.Load(), w.cfg.Pending.limit, w.p, w.pending)})
		return
	}
	if idem != nil && w.open != nil && len(w.open.producerIDs) >= w.cfg.Lease.MaxProducerChanges() {
		if _, ok := w.open.producerIDs[idem.id]; !ok {
			// Its commit could not store one more producer's state.
			w.seal(true)
		}
	}
	if w.open == nil {
		w.seq++
		w.open = &batch{seq: w.seq, base: w.next, opened: time.Now()}
		if w.cfg.Linger > 0 {
			seq := w.seq
			time.AfterFunc(w.cfg.Linger, func() { w.in.post(lingerFired{seq}) })
		}
	}
	now := w.cfg.Now().UnixMilli()
	base := w.next
	for i := range recs {
		recs[i].Offset = w.next
		if recs[i].Timestamp == 0 {
			recs[i].Timestamp = now
		}
		w.next++
	}
	b := w.open
	b.records = append(b.records, recs...)
	b.bytes += size
	b.headers += headers
	b.held += held
	b.waiters = append(b.waiters, waiter{reply: reply, producer: producer, request: request, base: base, count: len(recs), bytes: size, accepted: time.Now()})
	if request != 0 {
		b.identified++
	}
	if idem != nil {
		if b.producerIDs == nil {
			b.producerIDs = map[int64]struct{}{}
		}
		b.producerIDs[idem.id] = struct{}{}
		w.prod.accept(idem.id, idem.epoch, idem.firstSeq, len(recs), base, now)
	}
	w.pending += held // in the agent's budget since take
	switch {
	case b.bytes >= w.cfg.SegmentBytes, b.identified >= maxSegmentRequests:
		w.seal(true)
	case w.cfg.Linger <= 0:
		w.seal(false)
	}
}

// seal closes the open batch for upload. Unless forced (the batch is full, or the
// partition is flushing), a batch whose linger has passed while every upload slot is busy
// stays open and keeps growing until a slot frees: under load, segments grow instead of
// queueing, so that PUTs and commits per record fall as the rate rises, while a record
// waits no longer than for the uploads already running (adaptive batching, as Kafka
// producers do behind max.in.flight).
func (w *writer) seal(force bool) {
	if w.open == nil {
		return
	}
	if !force && w.inFlight >= w.cfg.MaxInFlight {
		w.sealDue = true
		return
	}
	w.sealDue = false
	w.open.sealed = time.Now()
	w.open.requests = make([]coordination.RequestRef, 0, w.open.identified)
	for _, wt := range w.open.waiters { // at most maxSegmentRequests (Append), in offset order
		if wt.request != 0 {
			w.open.requests = append(w.open.requests, coordination.RequestRef{ID: wt.request, Base: wt.base, Count: int32(wt.count)})
		}
	}
	metricProduceStage.WithLabelValues(stageBatchWait).Observe(w.open.sealed.Sub(w.open.opened).Seconds())
	w.queue = append(w.queue, w.open)
	w.open = nil
	w.pump()
}

// pump starts uploads while slots are free and the head commit when it is ready.
func (w *writer) pump() {
	if w.fatal != nil {
		return
	}
	if w.sealDue && w.inFlight < w.cfg.MaxInFlight && !w.draining {
		w.seal(false) // pumps again
		return
	}
	for _, b := range w.queue {
		if w.draining || w.inFlight >= w.cfg.MaxInFlight {
			break
		}
		if b.state == sealed {
			metricProduceStage.WithLabelValues(stageQueue).Observe(time.Since(b.sealed).Seconds())
			b.state = uploading
			w.inFlight++
			metricUploadsInFlight.Inc()
			// Every probeSegments-th segment tries LZ4 on every block, in case the
			// payload became compressible.
			w.uploads++
			opts := w.cfg.Segment
			opts.Incompressible = w.incompressible && w.uploads%probeSegments != 0
			gen := w.gen
			goroutines.Go(func() { w.upload(gen, b, opts) })
		}
	}
	if len(w.queue) > 0 && w.queue[0].state == uploaded {
		head := w.queue[0]
		head.state = committing
		head.committing = time.Now()
		if head.producerIDs != nil {
			head.producers = w.prod.changes(head.base, head.last(), head.producerIDs, w.cfg.Lease.MaxProducerChanges())
		}
		metricProduceStage.WithLabelValues(stageCommitWait).Observe(head.committing.Sub(head.uploaded).Seconds())
		goroutines.Go(func() { w.commit(head) })
	}
}

// upload encodes b and hands the segment to the flusher; the result comes back through
// the inbox with the object and offset it was written at.
func (w *writer) upload(gen int64, b *batch, opts segmentstore.Options) {
	start := time.Now()
	data, err := segmentstore.Encode(w.p.Topic, w.p.Partition, b.records, opts)
	encoded := time.Now()
	meta := coordination.SegmentMeta{
		Base: b.base, Last: b.last(), Records: int64(len(b.records)), Bytes: b.bytes,
		ZBytes: int64(len(data)), Epoch: w.epoch, WrittenMs: w.cfg.Now().UnixMilli(), Requests: b.requests,
	}
	if err != nil {
		w.in.post(uploadDone{gen: gen, b: b, meta: meta, encode: encoded.Sub(start), err: err})
		return
	}
	meta.MinTs, meta.MaxTs = b.records[0].Timestamp, b.records[0].Timestamp
	for i := range b.records {
		meta.MinTs = min(meta.MinTs, b.records[i].Timestamp)
		meta.MaxTs = max(meta.MaxTs, b.records[i].Timestamp)
	}
	// The segment counts in the agent's pending budget until its PUT is over, beside its
	// records: it is as large again, and without it a stalled store could hold twice the
	// budget (docs/BENCHMARKS.md, profiling item 19). Counted here and given back in the
	// flusher's callback, so that nothing depends on the actor being there to hear the
	// result.
	w.cfg.Pending.add(int64(len(data)))
	w.cfg.Flusher.submit(data, func(object string, offset int64, err error) {
		w.cfg.Pending.add(-int64(len(data)))
		meta.Object, meta.Offset = object, offset
		stored := time.Now()
		w.in.post(uploadDone{gen: gen, b: b, data: data, meta: meta, encode: encoded.Sub(start), upload: stored.Sub(encoded), stored: stored, err: err})
	})
}

func (w *writer) commit(b *batch) {
	// The deadline runs from the end of the PUT (stamped on the uploading goroutine, so
	// a stalled actor does not move it), not from the start of the commit: a segment that
	// waited behind slow commits gets less time, so that no segment is committed later
	// than CommitTimeout after its object was written, and the sweeper can tell an orphan
	// by its age.
	ctx, cancel := context.WithDeadline(context.Background(), b.uploaded.Add(w.cfg.CommitTimeout))
	defer cancel()
	rev, err := w.cfg.Lease.CommitWithProducers(ctx, b.meta, b.producers)
	w.in.post(commitDone{b: b, rev: rev, err: err})
}

// setLinger changes the linger (streamctl topic alter). The open batch waits no longer
// than the new linger from when it opened: a linger cut from a minute to 5 ms must not
// hold the records already waiting for the minute.
func (w *writer) setLinger(d time.Duration) {
	old := w.cfg.Linger
	w.cfg.Linger = d
	if w.open == nil || d >= old {
		return
	}
	seq := w.open.seq
	time.AfterFunc(max(d-time.Since(w.open.opened), 0), func() { w.in.post(lingerFired{seq}) })
}

// Process handles the background results waiting in the inbox. A non-nil error is fatal:
// the writer has failed every request and its owner must stop.
func (w *writer) Process() error {
	for _, item := range w.in.take() {
		switch m := item.(type) {
		case lingerFired:
			if w.open != nil && w.open.seq == m.seq {
				w.seal(false)
			}
		case uploadDone:
			w.onUpload(m)
		case commitDone:
			w.onCommit(m)
		}
	}
	w.pump()
	return w.fatal
}

func (w *writer) onUpload(m uploadDone) {
	w.inFlight--
	metricUploadsInFlight.Dec()
	if m.gen != w.gen || w.fatal != nil {
		// A batch already failed by a reset: its object is an orphan, never indexed.
		w.finishDraining()
		return
	}
	if m.err != nil {
		w.log.Warn("segment upload failed; failing uncommitted batches", zap.Int64("base", m.b.base), zap.Error(m.err))
		w.reset(fmt.Errorf("%w: upload of %s [%d, %d] failed: %w", ErrUnavailable, w.p, m.b.base, m.b.last(), m.err))
		return
	}
	m.b.meta, m.b.encoded = m.meta, m.data
	m.b.state = uploaded
	// LZ4 saved no more than a twentieth of the payload: not worth its time.
	w.incompressible = !segmentstore.CompressionPays(m.meta.ZBytes, m.meta.Bytes)
	m.b.uploaded = m.stored
	metricProduceStage.WithLabelValues(stageEncode).Observe(m.encode.Seconds())
	metricProduceStage.WithLabelValues(stageUpload).Observe(m.upload.Seconds())
	metricSegments.WithLabelValues(w.p.Topic).Inc()
	metricSegmentBytes.WithLabelValues("raw").Add(float64(m.meta.Bytes))
	metricSegmentBytes.WithLabelValues("compressed").Add(float64(m.meta.ZBytes))
}

// reset fails every batch that is not committing and restarts offsets after the last
// batch that may still commit.
func (w *writer) reset(cause error) {
	w.failUncommitted(cause)
	w.gen++
	w.next = w.committed
	if len(w.queue) == 1 {
		w.next = w.queue[0].last() + 1
	}
	w.draining = true
	w.finishDraining()
}

func (w *writer) finishDraining() {
	if w.draining && w.inFlight == 0 {
		w.draining = false
		w.log.Info("writer reset", zap.Int64("next", w.next))
	}
}

func (w *writer) onCommit(m commitDone) {
	b := m.b
	if len(w.queue) == 0 || w.queue[0] != b {
		// Only the head commits, and nothing fails a committing head but its own result
		// (abandon keeps it): a result for another batch is a bug, never to be acked.
		w.log.Error("commit result for a batch that is not committing", zap.Int64("base", b.base), zap.Error(m.err))
		return
	}
	if m.err != nil {
		result := "error"
		if errors.Is(m.err, coordination.ErrFenced) {
			result = "fenced"
		}
		metricCommits.WithLabelValues(result).Inc()
		w.log.Error("segment commit failed; stopping the partition", zap.Int64("base", b.base), zap.Error(m.err))
		w.stop(fmt.Errorf("%w: commit of %s [%d, %d]: %w", ErrUnavailable, w.p, b.base, b.last(), m.err))
		return
	}
	// Cleared before it is sliced off: the slot stays in the queue's array until an append
	// moves the queue, and would keep the batch, records and segment, alive after the
	// recent cache dropped it (docs/BENCHMARKS.md, profiling item 20).
	w.queue[0] = nil
	w.queue = w.queue[1:]
	w.committed = b.last() + 1
	w.addPending(-b.held)
	metricCommits.WithLabelValues("ok").Inc()
	now := time.Now()
	metricProduceStage.WithLabelValues(stageCommit).Observe(now.Sub(b.committing).Seconds())
	for _, wt := range b.waiters {
		metricProduceRecords.WithLabelValues(w.p.Topic).Add(float64(wt.count))
		metricProduceBytes.WithLabelValues(w.p.Topic).Add(float64(wt.bytes))
		metricProduceLatency.WithLabelValues(w.p.Topic).Observe(now.Sub(wt.accepted).Seconds())
		if wt.producer != 0 {
			w.prod.settle(wt.producer, wt.base, true)
		}
		wt.reply(produceResult{Base: wt.base, Count: wt.count})
	}
	if w.cfg.onCommit != nil {
		w.cfg.onCommit(b.meta, b.uploaded, m.rev)
	}
	w.recent.add(b)
	w.log.Debug("segment committed", zap.Int64("base", b.base), zap.Int64("last", b.last()), zap.Int64("revision", m.rev))
}

func (w *writer) fail(b *batch, err error) {
	w.addPending(-b.held)
	b.held = 0 // given back once, whatever happens to the batch after
	for _, wt := range b.waiters {
		if wt.producer != 0 {
			w.prod.settle(wt.producer, wt.base, false)
		}
		wt.reply(produceResult{Err: err})
	}
	b.waiters = nil
}

// stop fails everything with err; later calls fail with it too.
func (w *writer) stop(err error) {
	w.abandon(err)
	if len(w.queue) > 0 {
		w.fail(w.queue[0], err)
		w.queue = nil
	}
}

// abandon is stop but for a committing head: it fails every other batch with err (and
// every later call), while the head's transaction, which may yet be applied, answers
// its producers when its result comes.
func (w *writer) abandon(err error) {
	if w.fatal == nil {
		w.fatal = err
	}
	w.failUncommitted(err)
}

// failUncommitted fails every batch but a committing head, which alone may still reach
// the log, and leaves the queue holding that head or nothing.
func (w *writer) failUncommitted(err error) {
	keep := 0
	if len(w.queue) > 0 && w.queue[0].state == committing {
		keep = 1
	}
	for _, b := range w.queue[keep:] {
		w.fail(b, err)
	}
	clear(w.queue[keep:])
	w.queue = w.queue[:keep]
	if w.open != nil {
		w.fail(w.open, err)
		w.open = nil
	}
	w.sealDue = false
}

// Flush seals the open batch and blocks until everything accepted is committed or failed,
// processing results itself. It is for a stopping actor, whose mailbox no longer runs.
//
// When ctx ends first, every batch not yet committing fails (nothing of it is in the
// log), but a commit under way is waited for: its transaction may still be applied, and
// its producers, told it failed, would write its records again. It ends by its own
// deadline, CommitTimeout after its PUT.
func (w *writer) Flush(ctx context.Context) error {
	w.seal(true)
	done := ctx.Done()
	for w.busy() {
		select {
		case <-w.in.signal:
			_ = w.Process() // a fatal error is returned below
		case <-done:
			done = nil
			w.abandon(fmt.Errorf("%w: %s stopped before its writes completed", ErrUnavailable, w.p))
		}
	}
	return w.fatal
}

// busy reports whether Flush has something to wait for: with the writer failed, only a
// commit under way (uploads still running are orphans by then).
func (w *writer) busy() bool {
	if w.fatal != nil {
		return len(w.queue) > 0
	}
	return len(w.queue) > 0 || w.inFlight > 0
}

// Close fails whatever is still pending with err (the partition is going away) and gives
// its recent records back to the agent's budget.
func (w *writer) Close(err error) {
	w.stop(err)
	w.recent.clear()
}

// addPending accounts n bytes of records accepted (or, negative, acked or failed) here and in
// the agent's budget.
func (w *writer) addPending(n int64) {
	w.pending += n
	w.cfg.Pending.add(n)
}
