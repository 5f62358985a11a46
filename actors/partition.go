package actors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
)

// PartitionKind is the cluster kind of partition actors; their identity is
// "<topic>/<partition>".
const PartitionKind = "partition"

// Identity is the cluster identity of a partition actor.
func Identity(p coordination.Partition) string { return p.Topic + "/" + strconv.Itoa(int(p.Partition)) }

func parseIdentity(id string) (coordination.Partition, error) {
	i := strings.LastIndexByte(id, '/')
	if i <= 0 {
		return coordination.Partition{}, fmt.Errorf("%w: partition identity %q", ErrInvalidArgument, id)
	}
	n, err := strconv.ParseInt(id[i+1:], 10, 32)
	if err != nil || n < 0 {
		return coordination.Partition{}, fmt.Errorf("%w: partition identity %q", ErrInvalidArgument, id)
	}
	return coordination.Partition{Topic: id[:i], Partition: int32(n)}, nil
}

const (
	// maxStash bounds requests held while a partition acquires its lease.
	maxStash = 10000
	// acquireTimeout bounds the wait for a previous owner's lease to be released or expire.
	acquireTimeout = 30 * time.Second
	// stopFlushTimeout bounds how long a stopping partition waits for its last batches to
	// be committed; a commit already under way then is still waited for (writer.Flush).
	stopFlushTimeout = 10 * time.Second
	// defaultFetchBytes answers fetches that do not say how much they want.
	defaultFetchBytes = 1 << 20
	// historyReadTimeout bounds a fetch served from the store: how long after resolving a
	// segment a reader may still read its object (TestRemovalGraceOutlastsReads).
	historyReadTimeout = 30 * time.Second
)

// partitionDeps are what every partition actor of an agent shares.
type partitionDeps struct {
	client  *coordination.Client
	session *coordination.Session
	// mirror is the agent's view of etcd (a fetch past this owner's log checks that no
	// other owner wrote there).
	mirror  *coordination.Mirror
	history *history
	system  *actor.ActorSystem
	local   *localActivations
	writer  writerConfig // Store and tuning; Lease, Linger and SegmentBytes are set per partition
	// compactor applies retention and merges to the partitions of the agent.
	compactor *compactor
	log       *zap.Logger
	// leaving is set when the agent starts to leave the cluster gracefully: its partitions
	// refuse new produce requests (Unavailable, nothing written) and answer the ones they
	// hold before the agent withdraws its member record (Node.leave).
	leaving atomic.Bool
}

// Messages local to an agent (never sent across nodes).
type (
	acquired struct {
		lease     *coordination.Lease
		spec      coordination.TopicSpec
		hwm       int64
		logStart  int64 // the first offset indexed, hwm when none is
		producers coordination.ProducerStates
		recent    []coordination.SegmentMeta // the last segments, for the requests written
		err       error
	}
	wake         struct{}
	fetchExpired struct{ w *fetchWaiter }
	// drain asks a partition of a leaving agent to write what it accepted; it answers
	// drained once every request it accepted is answered.
	drain   struct{}
	drained struct{}
	// respec carries the topic's new settings (streamctl topic alter).
	respec struct{ spec coordination.TopicSpec }
)

type stashed struct {
	msg    any
	sender *actor.PID
	at     time.Time
	// held is what a produce holds of the agent's pending budget while it waits; also are
	// the senders of its earlier attempts (the same request id; msg is the newest), which
	// wait for its outcome rather than each hold a copy of its records.
	held int64
	also []*actor.PID
}

type fetchWaiter struct {
	req    *partitionpb.FetchRequest
	sender *actor.PID
	done   bool
}

// partitionActor owns one partition while its node holds the partition's lease
// (DESIGN.md §5): it acquires the lease on activation, serves produce through a writer and
// fetches from memory, the store, or by long-polling at the log end, and on stopping
// commits what it accepted and releases the lease.
type partitionActor struct {
	deps  *partitionDeps
	acq   *acquisition
	p     coordination.Partition
	self  *actor.PID
	log   *zap.Logger
	lease *coordination.Lease
	w     *writer
	stash []stashed
	// stashedIDs finds a stashed produce by its request id.
	stashedIDs map[uint64]int
	waiters    []*fetchWaiter
	index      segmentIndex // the run of the segment index history reads last used
	plog       *partitionLog
	failed     error // set when the partition cannot serve (acquire failed, fenced)
	// requests: produce requests being written or written lately, for re-sends.
	requests *requestLog
}

func newPartitionActor(deps *partitionDeps) actor.Actor {
	return &partitionActor{deps: deps, log: deps.log, requests: newRequestLog(time.Now)}
}

// Receive implements actor.Actor.
func (a *partitionActor) Receive(ctx actor.Context) {
	defer a.logPanic(ctx.Message())
	if hook := testReceiveHook.Load(); hook != nil {
		(*hook)(ctx.Message())
	}
	switch m := ctx.Message().(type) {
	case *cluster.ClusterInit:
		a.init(ctx, m.Identity.Identity)
	case *acquired:
		a.onAcquired(ctx, m)
	case *wake:
		a.process(ctx)
	case *partitionpb.ProduceRequest:
		a.produce(m, ctx.Sender(), 0)
	case *partitionpb.FetchRequest:
		a.fetch(m, ctx.Sender())
	case *respec:
		if a.w != nil {
			a.w.setLinger(m.spec.Linger())
			a.w.cfg.SegmentBytes = m.spec.SegmentBytes
			a.log.Info("topic settings changed", zap.Duration("linger", m.spec.Linger()), zap.Int64("segment_bytes", m.spec.SegmentBytes),
				zap.Int64("retention_ms", m.spec.RetentionMs), zap.Int64("retention_bytes", m.spec.RetainBytes()), zap.Int64("merge_bytes", m.spec.MergeTarget()))
		}
	case *fetchExpired:
		if !m.w.done {
			m.w.done = true
			a.replyFetch(m.w.sender, &partitionpb.FetchResponse{HighWaterMark: a.w.Committed()})
		}
		// Gone from the list now, not at the next commit: an idle partition's consumers
		// long-poll every second, and their waiters would pile up until one comes.
		if i := slices.Index(a.waiters, m.w); i >= 0 {
			a.setWaiters(slices.Delete(a.waiters, i, i+1))
		}
	case *drain:
		a.drain()
		ctx.Respond(&drained{})
	case *actor.Stopping:
		a.stopping()
	case *actor.Stopped:
		if a.self != nil {
			a.deps.local.remove(a.p, a.self)
		}
	}
}

// testReceiveHook, set by tests only, sees each message before the partition handles it
// (and may panic, as a bug would).
var testReceiveHook atomic.Pointer[func(msg any)]

// logPanic logs a panic of the partition's Receive with its stack, which protoactor's
// recovery does not keep, and panics on: the placement actor's strategy then stops the
// partition (stopOnPanic). A panic while stopping is not passed on: protoactor, already
// stopping the actor, would take the Stop its strategy sends as done, and the actor would
// never finish stopping nor its next activation start; stopping on, it still does.
func (a *partitionActor) logPanic(msg any) {
	if r := recover(); r != nil {
		switch msg.(type) {
		case *actor.Stopping, *actor.Stopped:
			a.log.Error("partition actor panicked while stopping", zap.Any("panic", r), zap.String("message", fmt.Sprintf("%T", msg)), zap.Stack("stack"))
			return
		}
		a.log.Error("partition actor panicked: stopping it", zap.Any("panic", r), zap.String("message", fmt.Sprintf("%T", msg)), zap.Stack("stack"))
		panic(r)
	}
}

func (a *partitionActor) init(ctx actor.Context, identity string) {
	a.self = ctx.Self()
	p, err := parseIdentity(identity)
	if err != nil {
		a.failed = err
		ctx.Poison(a.self)
		return
	}
	a.p = p
	a.deps.local.add(p, a.self)
	a.log = a.deps.log.With(zap.String("topic", p.Topic), zap.Int32("partition", p.Partition))
	session, root, self := a.deps.session, a.deps.system.Root, a.self
	actx, cancel := context.WithTimeout(context.Background(), acquireTimeout)
	acq := &acquisition{cancel: cancel}
	a.acq = acq
	go func() {
		defer cancel()
		res := &acquired{}
		res.spec, res.err = a.deps.client.Topic(actx, p.Topic)
		if res.err == nil {
			res.lease, res.err = session.Acquire(actx, p.Topic, p.Partition)
		}
		if res.err == nil {
			if res.hwm, res.err = res.lease.HWM(actx); res.err == nil {
				res.producers, res.err = res.lease.Producers(actx)
			}
			if res.err == nil {
				// Fetch answers and Kafka's ListOffsets carry it from the first request on,
				// before the compactor's first pass loads the index.
				res.logStart, res.err = res.lease.LogStart(actx, res.hwm)
			}
			if res.err == nil {
				res.recent, res.err = res.lease.RecentSegments(actx, res.hwm, recentSegments, maxRememberedPerPartition, requestMemory)
			}
			if res.err != nil {
				_ = res.lease.Release(context.Background())
				res.lease = nil
			}
		}
		if !acq.hand(res.lease) {
			return // the actor stopped meanwhile; hand released the lease
		}
		root.Send(self, res)
	}()
}

// acquisition hands a lease acquired in the background to its actor, or releases it if the
// actor stopped meanwhile: a message to a stopped actor is lost, and with it the lease
// would stay held by a session that has no actor for it, blocking the real owner.
type acquisition struct {
	cancel  context.CancelFunc
	mu      sync.Mutex
	stopped bool
	lease   *coordination.Lease
}

// hand records the lease for the actor; false means the actor is gone and the lease was
// released.
func (q *acquisition) hand(l *coordination.Lease) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		if l != nil {
			_ = l.Release(context.Background())
		}
		return false
	}
	q.lease = l
	return true
}

// stop cancels a running acquisition and returns a lease it produced that the actor has
// not taken yet, for the actor to release.
func (q *acquisition) stop() *coordination.Lease {
	q.cancel()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stopped = true
	return q.lease
}

func (a *partitionActor) onAcquired(ctx actor.Context, m *acquired) {
	if m.err != nil {
		a.log.Warn("partition not activated", zap.Error(m.err))
		a.failed = fmt.Errorf("%w: %s could not be activated: %w", ErrUnavailable, a.p, m.err)
		if errors.Is(m.err, coordination.ErrTopicNotFound) || errors.Is(m.err, coordination.ErrPartitionNotFound) {
			a.failed = m.err
		}
		a.drainStash()
		ctx.Poison(a.self)
		return
	}
	a.lease = m.lease
	a.log = a.log.With(zap.Int64("epoch", m.lease.Epoch()))
	if n := a.requests.restore(m.recent); n > 0 {
		a.log.Info("requests written by earlier owners remembered", zap.Int("requests", n))
	}
	cfg := a.deps.writer
	cfg.Lease, cfg.Linger, cfg.SegmentBytes, cfg.Log = m.lease, m.spec.Linger(), m.spec.SegmentBytes, a.log
	cfg.Producers = m.producers
	root, self := a.deps.system.Root, a.self
	cfg.notify = func() { root.Send(self, &wake{}) }
	a.w = newWriter(cfg, m.hwm)
	a.plog = newPartitionLog(m.lease, m.logStart, m.spec, &a.w.recent, a.log)
	a.plog.changed = a.index.reset
	a.plog.respec = func(spec coordination.TopicSpec) { root.Send(self, &respec{spec}) }
	a.w.cfg.onCommit = a.plog.committed
	a.deps.compactor.add(a.plog)
	node := a.deps.session.Node()
	metricLeaseAcquisitions.WithLabelValues(node.Node).Inc()
	for _, r := range []string{"ok", "lost"} {
		metricLeaseReleases.WithLabelValues(node.Node, r) // read 0, not "no data", until one is
	}
	metricPartitionsOwned.WithLabelValues(node.Node, node.Zone).Inc()
	a.log.Info("partition active", zap.Int64("hwm", m.hwm))
	a.drainStash()
}

// drainStash handles what arrived while the lease was being acquired.
func (a *partitionActor) drainStash() {
	stash := a.stash
	a.stash, a.stashedIDs = nil, nil
	// Every stashed produce's bytes go back first: a panic while serving one must not
	// keep the others' bytes from the agent's budget for good.
	for _, s := range stash {
		a.deps.writer.Pending.add(-s.held) // the writer counts what it accepts
	}
	for _, s := range stash {
		switch m := s.msg.(type) {
		case *partitionpb.ProduceRequest:
			a.produce(m, s.sender, time.Since(s.at))
			for _, sender := range s.also {
				a.produce(m, sender, time.Since(s.at)) // answered with the first's outcome
			}
		case *partitionpb.FetchRequest:
			a.fetch(m, s.sender)
		}
	}
}

func (a *partitionActor) notReady(msg any, sender *actor.PID) (error, bool) {
	if a.failed != nil {
		return a.failed, true
	}
	if a.w != nil {
		return nil, false
	}
	m, produce := msg.(*partitionpb.ProduceRequest)
	if produce && m.RequestId != 0 {
		// A client's call re-sends an unanswered attempt every few seconds, and a start
		// may wait for an earlier owner's session to expire.
		if i, ok := a.stashedIDs[m.RequestId]; ok {
			st := &a.stash[i]
			if n := len(st.msg.(*partitionpb.ProduceRequest).Records); n != len(m.Records) {
				return idMismatch(m.RequestId, n, len(m.Records)), true
			}
			// The newest attempt is served, as its sender waits longest (an attempt held
			// past its wait is refused); the others wait for its outcome.
			st.also = append(st.also, st.sender)
			st.msg, st.sender, st.at = msg, sender, time.Now()
			return nil, true
		}
	}
	if len(a.stash) >= maxStash {
		return fmt.Errorf("%w: %s is still starting", ErrBackpressure, a.p), true
	}
	s := stashed{msg: msg, sender: sender, at: time.Now()}
	if produce {
		// Its records count in the agent's pending budget while they wait, as they will
		// once the partition takes them.
		var payload, headers int64
		for _, r := range m.Records {
			payload += int64(r.PayloadBytes())
			headers += int64(len(r.Headers))
		}
		s.held = pendingBytes(payload, int64(len(m.Records)), headers)
		if pending := a.deps.writer.Pending; !pending.take(s.held) {
			return fmt.Errorf("%w: %s is still starting, and the agent has %d bytes waiting to be written (limit %d)",
				ErrBackpressure, a.p, pending.used.Load(), pending.limit), true
		}
		if m.RequestId != 0 {
			if a.stashedIDs == nil {
				a.stashedIDs = map[uint64]int{}
			}
			a.stashedIDs[m.RequestId] = len(a.stash)
		}
	}
	a.stash = append(a.stash, s)
	return nil, true
}

// produce serves a produce request the partition held for held while it started (0:
// none).
func (a *partitionActor) produce(m *partitionpb.ProduceRequest, sender *actor.PID, held time.Duration) {
	id := m.RequestId
	if id != 0 {
		// First: a re-send gets its request's outcome even while the agent leaves.
		written, ok, err := a.requests.resent(id, len(m.Records), sender)
		if err != nil {
			metricProduceRequests.WithLabelValues(a.p.Topic, resultOf(err)).Inc()
			a.replyProduce(sender, &partitionpb.ProduceResponse{Code: codeOf(err), Message: err.Error()})
			return
		}
		if ok {
			metricProduceResent.WithLabelValues(a.p.Topic).Inc()
			if written != nil {
				a.log.Debug("re-sent request answered", zap.Uint64("request", id), zap.Int64("base", written.base))
				a.replyProduce(sender, &partitionpb.ProduceResponse{BaseOffset: written.base, Count: written.count,
					Epoch: a.lease.Epoch(), Node: a.deps.session.Node().Node})
			}
			return
		}
	}
	if a.deps.leaving.Load() {
		err := fmt.Errorf("%w: %s: agent %s is leaving the cluster", ErrUnavailable, a.p, a.deps.session.Node().Node)
		metricProduceRequests.WithLabelValues(a.p.Topic, resultOf(err)).Inc()
		a.replyProduce(sender, &partitionpb.ProduceResponse{Code: codeOf(err), Message: err.Error()})
		return
	}
	if err, wait := a.notReady(m, sender); wait {
		if err != nil {
			metricProduceRequests.WithLabelValues(a.p.Topic, resultOf(err)).Inc()
			a.replyProduce(sender, &partitionpb.ProduceResponse{Code: codeOf(err), Message: err.Error()})
		}
		return
	}
	if err := a.otherIncarnation(m.TopicIncarnation); err != nil {
		metricProduceRequests.WithLabelValues(a.p.Topic, resultOf(err)).Inc()
		a.replyProduce(sender, &partitionpb.ProduceResponse{Code: codeOf(err), Message: err.Error()})
		return
	}
	if m.WaitMs > 0 && held > time.Duration(m.WaitMs)*time.Millisecond {
		// Its sender has told its client the outcome is unknown: written now, the records
		// would be written again by the client's retry. (A re-send of a written request
		// was answered above, however long held.)
		err := fmt.Errorf("%w: %s: held %s while the partition started, its sender waited %d ms",
			ErrExpired, a.p, held.Round(time.Millisecond), m.WaitMs)
		a.log.Debug("produce request refused: held past its sender's wait", zap.Error(err))
		metricProduceRequests.WithLabelValues(a.p.Topic, resultOf(err)).Inc()
		a.replyProduce(sender, &partitionpb.ProduceResponse{Code: codeOf(err), Message: err.Error()})
		return
	}
	root, epoch, node := a.deps.system.Root, a.lease.Epoch(), a.deps.session.Node().Node
	var idem *idempotence
	if m.ProducerId > 0 {
		if m.ProducerEpoch < 0 || m.ProducerEpoch > math.MaxInt16 || m.BaseSequence < 0 {
			err := fmt.Errorf("%w: producer %d epoch %d sequence %d", ErrInvalidArgument, m.ProducerId, m.ProducerEpoch, m.BaseSequence)
			a.replyProduce(sender, &partitionpb.ProduceResponse{Code: codeOf(err), Message: err.Error()})
			return
		}
		idem = &idempotence{id: m.ProducerId, epoch: int16(m.ProducerEpoch), firstSeq: m.BaseSequence, follows: m.Follows}
	}
	if id != 0 {
		a.requests.begin(id, len(m.Records))
	}
	a.w.Append(toRecords(m.Records), idem, id, func(r produceResult) {
		metricProduceRequests.WithLabelValues(a.p.Topic, resultOf(r.Err)).Inc()
		resp := &partitionpb.ProduceResponse{Code: codeOf(r.Err), BaseOffset: r.Base, Count: int32(r.Count), Epoch: epoch, Node: node}
		if r.Err != nil {
			resp.Message = r.Err.Error()
		}
		if sender != nil {
			root.Send(sender, resp)
		}
		if id != 0 {
			for _, s := range a.requests.settle(id, resp) {
				if s != nil {
					root.Send(s, resp)
				}
			}
		}
	})
}

// otherIncarnation refuses a request for another incarnation of the topic than the one
// whose lease the partition holds (0: the sender did not say). An older one was deleted:
// its records must not go into, nor its readers read, the topic created since under its
// name. A newer one means this activation serves a deleted topic and is about to stop;
// its sender retries and reaches the new topic's.
func (a *partitionActor) otherIncarnation(incarnation int64) error {
	switch serving := a.lease.TopicIncarnation(); {
	case incarnation == 0 || incarnation == serving:
		return nil
	case incarnation < serving:
		return fmt.Errorf("%w: %s was deleted and created again (the request is for incarnation %d, the topic is at %d)",
			coordination.ErrTopicNotFound, a.p, incarnation, serving)
	default:
		return fmt.Errorf("%w: %s: this partition serves a deleted incarnation (%d) of the topic, not %d",
			ErrUnavailable, a.p, serving, incarnation)
	}
}

func (a *partitionActor) replyProduce(sender *actor.PID, resp *partitionpb.ProduceResponse) {
	if sender != nil {
		a.deps.system.Root.Send(sender, resp)
	}
}

func (a *partitionActor) replyFetch(sender *actor.PID, resp *partitionpb.FetchResponse) {
	if a.lease != nil {
		resp.Epoch = a.lease.Epoch()
	}
	if resp.Code == partitionpb.Code_CODE_OK && a.plog != nil {
		resp.LogStartOffset = max(a.plog.logStart.Load(), 0) // Kafka's fetch answers carry it
	}
	resp.Node = a.deps.session.Node().Node
	observeFetch(a.p.Topic, resp)
	if sender != nil {
		a.deps.system.Root.Send(sender, resp)
	}
}

// observeFetch counts a fetch answer, its records and their payload bytes.
func observeFetch(topic string, resp *partitionpb.FetchResponse) {
	metricFetchRequests.WithLabelValues(topic, fetchResult(resp.Code)).Inc()
	if len(resp.Records) == 0 {
		return
	}
	size := 0
	for _, r := range resp.Records {
		size += r.PayloadBytes()
	}
	metricFetchRecords.WithLabelValues(topic).Add(float64(len(resp.Records)))
	metricFetchBytes.WithLabelValues(topic).Add(float64(size))
}

// fetchResult names a fetch answer's code for metric labels, as resultOf does for errors.
func fetchResult(c partitionpb.Code) string {
	switch c {
	case partitionpb.Code_CODE_OK:
		return "ok"
	case partitionpb.Code_CODE_INVALID_ARGUMENT:
		return "invalid"
	case partitionpb.Code_CODE_OUT_OF_RANGE:
		return "out_of_range"
	case partitionpb.Code_CODE_NOT_FOUND:
		return "not_found"
	case partitionpb.Code_CODE_RESOURCE_EXHAUSTED:
		return "backpressure"
	case partitionpb.Code_CODE_DATA_LOSS:
		return "data_loss"
	default:
		return "unavailable"
	}
}

func (a *partitionActor) fetch(m *partitionpb.FetchRequest, sender *actor.PID) {
	if m.Stats {
		a.stats(sender)
		return
	}
	if err, wait := a.notReady(m, sender); wait {
		if err != nil {
			a.replyFetch(sender, &partitionpb.FetchResponse{Code: codeOf(err), Message: err.Error()})
		}
		return
	}
	if err := a.otherIncarnation(m.TopicIncarnation); err != nil {
		a.replyFetch(sender, &partitionpb.FetchResponse{Code: codeOf(err), Message: err.Error()})
		return
	}
	hwm, start := a.w.Committed(), a.plog.logStart.Load()
	switch {
	case m.Offset >= 0 && m.Offset < start:
		a.replyFetch(sender, &partitionpb.FetchResponse{Code: partitionpb.Code_CODE_OUT_OF_RANGE,
			Message:       (&coordination.OffsetRangeError{Topic: a.p.Topic, Partition: a.p.Partition, Offset: m.Offset, LogStart: start, HWM: hwm}).Error(),
			HighWaterMark: hwm, LogStartOffset: start})
	case m.Offset < 0:
		a.replyFetch(sender, &partitionpb.FetchResponse{Code: partitionpb.Code_CODE_INVALID_ARGUMENT, Message: fmt.Sprintf("offset %d is negative", m.Offset), HighWaterMark: hwm})
	case m.Offset > a.w.Assigned():
		if indexed := a.deps.mirror.HWM(a.p); indexed >= m.Offset {
			// etcd's index (as this agent mirrors it) has the offset committed: another
			// owner wrote past this one, whose lease is lost without its having heard so
			// yet (its agent paused, then resumed). Out of range would make a Kafka
			// consumer reset its offset; unavailable makes it ask again, and reach the
			// owner.
			a.replyFetch(sender, &partitionpb.FetchResponse{Code: partitionpb.Code_CODE_UNAVAILABLE,
				Message: fmt.Sprintf("%s: this owner (epoch %d) is behind the index, committed up to %d: the partition has moved", a.p, a.w.epoch, indexed)})
			return
		}
		a.replyFetch(sender, &partitionpb.FetchResponse{Code: partitionpb.Code_CODE_OUT_OF_RANGE,
			Message: fmt.Sprintf("offset %d is past the high-water mark %d of %s", m.Offset, hwm, a.p), HighWaterMark: hwm, LogStartOffset: max(start, 0)})
	case m.Offset >= hwm:
		// At the log end, or just past what this actor has heard committed: a history read
		// may have returned a segment whose commit etcd applied before the writer heard of
		// it. Either way the offset comes next.
		if m.MaxWaitMs <= 0 {
			a.replyFetch(sender, &partitionpb.FetchResponse{HighWaterMark: hwm})
			return
		}
		w := &fetchWaiter{req: m, sender: sender}
		a.setWaiters(append(a.waiters, w))
		root, self := a.deps.system.Root, a.self
		time.AfterFunc(time.Duration(m.MaxWaitMs)*time.Millisecond, func() { root.Send(self, &fetchExpired{w}) })
	default:
		a.serve(m, sender)
	}
}

// stats answers a FetchRequest for the log's shape from the owner's view of its index,
// exact on the actor's goroutine (the writer appends its commits to the view there, as it
// raises the high-water mark), and at once: CODE_UNAVAILABLE while the partition starts
// or its view loads (at its compactor's first pass; never with compaction off), for the
// caller to read etcd rather than wait.
func (a *partitionActor) stats(sender *actor.PID) {
	resp := &partitionpb.FetchResponse{Stats: true, Node: a.deps.session.Node().Node}
	switch {
	case a.failed != nil:
		resp.Code, resp.Message = codeOf(a.failed), a.failed.Error()
	case a.w == nil:
		resp.Code, resp.Message = partitionpb.Code_CODE_UNAVAILABLE, fmt.Sprintf("%s is starting", a.p)
	default:
		start, segments, stored, hwm, ok := a.plog.stats(a.w.Committed())
		if !ok {
			resp.Code, resp.Message = partitionpb.Code_CODE_UNAVAILABLE, fmt.Sprintf("%s: the owner's view of the index is not loaded", a.p)
			break
		}
		resp.LogStartOffset, resp.Segments, resp.StoredBytes, resp.HighWaterMark = start, segments, stored, hwm
	}
	if a.lease != nil {
		resp.Epoch = a.lease.Epoch()
	}
	if sender != nil {
		a.deps.system.Root.Send(sender, resp)
	}
}

// serve answers a fetch below the high-water mark, from memory when it can, else from
// the store on a pooled goroutine.
func (a *partitionActor) serve(m *partitionpb.FetchRequest, sender *actor.PID) {
	maxBytes := int(m.MaxBytes)
	if maxBytes <= 0 {
		maxBytes = defaultFetchBytes
	}
	hwm := a.w.Committed()
	if recs, ok := a.w.recent.read(m.Offset, maxBytes); ok {
		a.replyFetch(sender, &partitionpb.FetchResponse{Records: fromRecords(recs), HighWaterMark: hwm})
		return
	}
	h, p, idx := a.deps.history, a.p, &a.index
	resp := &partitionpb.FetchResponse{Epoch: a.lease.Epoch(), Node: a.deps.session.Node().Node, LogStartOffset: max(a.plog.logStart.Load(), 0)}
	root := a.deps.system.Root
	// On a pooled goroutine, whose stack has grown already: a fresh one grew through the
	// S3 client's calls on every read (6% of the agent's CPU in a catch-up read).
	goroutines.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), historyReadTimeout)
		defer cancel()
		// What the read gets from the store counts in the agent's history read budget
		// until its answer is handed on, whether or not its caller still waits for it.
		charge := charging(h.reads)
		defer charge.release()
		recs, err := h.read(ctx, p, idx, m.Offset, maxBytes, charge)
		// Segments read from etcd may have been committed after hwm was taken.
		if n := len(recs); n > 0 {
			hwm = max(hwm, recs[n-1].Offset+1)
		}
		resp.Code, resp.HighWaterMark, resp.Records = codeOf(err), hwm, fromRecords(recs)
		if err != nil {
			resp.Message = err.Error()
		}
		if re := (*coordination.OffsetRangeError)(nil); errors.As(err, &re) {
			resp.LogStartOffset = re.LogStart
		}
		observeFetch(p.Topic, resp)
		if sender != nil {
			root.Send(sender, resp)
		}
	})
}

func (a *partitionActor) process(ctx actor.Context) {
	if a.w == nil {
		return
	}
	if err := a.w.Process(); err != nil {
		a.log.Error("partition writer failed; stopping", zap.Error(err))
		a.failed = err
		ctx.Poison(a.self)
	}
	a.serveWaiters()
}

// setWaiters replaces the partition's parked fetches, counting them in
// streamhouse_fetch_waiting.
func (a *partitionActor) setWaiters(ws []*fetchWaiter) {
	metricFetchWaiting.Add(float64(len(ws) - len(a.waiters)))
	a.waiters = ws
}

// serveWaiters answers the long-polls at the old log end that the commits since can
// answer.
func (a *partitionActor) serveWaiters() {
	hwm := a.w.Committed()
	kept := a.waiters[:0]
	for _, w := range a.waiters {
		switch {
		case w.done:
		case w.req.Offset < hwm:
			w.done = true
			a.serve(w.req, w.sender)
		default:
			kept = append(kept, w)
		}
	}
	a.setWaiters(kept)
}

// drain writes what the partition accepted, answering its producers, while the agent is
// still a member: were it to leave first, a client would re-send its unanswered requests
// to the new owner while this one still commits them, and they would be written twice.
func (a *partitionActor) drain() {
	if a.w == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopFlushTimeout)
	defer cancel()
	if err := a.w.Flush(ctx); err != nil {
		a.log.Warn("partition not drained before leaving", zap.Error(err))
	}
	a.serveWaiters()
}

func (a *partitionActor) stopping() {
	if a.plog != nil {
		a.deps.compactor.remove(a.plog)
	}
	if a.w != nil {
		ctx, cancel := context.WithTimeout(context.Background(), stopFlushTimeout)
		err := a.w.Flush(ctx)
		cancel()
		if err != nil {
			a.log.Warn("partition stopped before flushing", zap.Error(err))
		}
		a.w.Close(fmt.Errorf("%w: %s moved", ErrUnavailable, a.p))
	}
	if a.acq != nil {
		if pending := a.acq.stop(); pending != nil && a.lease == nil {
			a.lease = pending // acquired, but the news had not reached the actor yet
		}
	}
	if a.w != nil {
		node := a.deps.session.Node()
		metricPartitionsOwned.WithLabelValues(node.Node, node.Zone).Dec()
	}
	if a.lease != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		result := "ok"
		if err := a.lease.Release(ctx); err != nil {
			result = "lost"
			a.log.Warn("partition lease not released", zap.Error(err))
		}
		cancel()
		metricLeaseReleases.WithLabelValues(a.deps.session.Node().Node, result).Inc()
	}
	if a.failed == nil {
		a.failed = fmt.Errorf("%w: %s moved", ErrUnavailable, a.p)
	}
	a.drainStash()
	for _, w := range a.waiters {
		if !w.done {
			a.replyFetch(w.sender, &partitionpb.FetchResponse{Code: partitionpb.Code_CODE_UNAVAILABLE, Message: a.failed.Error()})
		}
	}
	a.setWaiters(nil)
	a.log.Info("partition stopped")
}
