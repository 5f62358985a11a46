package coordination

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Lease is the right to write one partition, held by a session at an epoch. The epoch is
// the CreateRevision of the lease key: it increases with every new owner, and every write
// the owner makes is guarded on it.
type Lease struct {
	s      *Session
	p      Partition
	epoch  int64
	key    string
	hwmKey string
	// incarnation is the topic's (TopicSpec.Incarnation) when the lease was taken: the
	// lease is taken only if the topic is unchanged since (the transaction's guard).
	incarnation int64
	log         *zap.Logger
	// rewrites numbers the lease's index rewrites, for unique tombstone keys.
	rewrites atomic.Int64
}

// Acquire takes the partition's lease for the session. If another node holds it, Acquire
// waits until that node releases it or its session expires, then tries again; it never
// takes a lease from a live holder. A lease that this very session still holds (an earlier
// activation on this node that did not release) is replaced, so that the new activation
// gets a new epoch and fences the old one.
//
// On success the partition's high-water mark exists (created at 0 for a new partition).
func (s *Session) Acquire(ctx context.Context, topic string, partition int32) (*Lease, error) {
	keys := s.c.keys
	l := &Lease{s: s, p: Partition{topic, partition}, key: keys.Lease(topic, partition), hwmKey: keys.HWM(topic, partition)}
	topicKey := keys.Topic(topic)
	for {
		if s.done() {
			return nil, fmt.Errorf("acquire %s: %w", l.p, ErrSessionDone)
		}
		// The topic must still be live when the lease is taken: once it is deleted, no
		// new owner may appear (and recreate the high-water mark) while PurgeTopic
		// removes the partition's keys.
		spec, topicRev, err := s.c.checkPartition(ctx, topic, partition)
		if err != nil {
			return nil, err
		}
		l.incarnation = spec.Incarnation
		val := mustJSON(LeaseValue{NodeInfo: s.node, AcquiredAt: s.c.now()})
		resp, err := s.c.etcd.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(l.key), "=", 0), clientv3.Compare(clientv3.ModRevision(topicKey), "=", topicRev)).
			Then(
				clientv3.OpPut(l.key, val, clientv3.WithLease(s.LeaseID())),
				clientv3.OpTxn(
					[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(l.hwmKey), "=", 0)},
					[]clientv3.Op{clientv3.OpPut(l.hwmKey, "0")}, nil),
			).
			Else(clientv3.OpGet(l.key), clientv3.OpGet(topicKey)).
			Commit()
		if err != nil {
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return nil, fmt.Errorf("acquire %s: %w", l.p, ErrSessionDone)
			}
			return nil, fmt.Errorf("acquire %s: %w", l.p, err)
		}
		if resp.Succeeded {
			// The key was created by this transaction, so its CreateRevision is the
			// transaction's revision.
			l.epoch = resp.Header.Revision
			l.log = s.log.With(zap.String("topic", topic), zap.Int32("partition", partition), zap.Int64("epoch", l.epoch))
			l.log.Info("partition lease acquired")
			return l, nil
		}
		if t := firstKV(resp, 1); t == nil || t.ModRevision != topicRev {
			continue // the topic changed (altered, or deleted): check it again
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // released between compare and get: try again
		}
		holder := kvs[0]
		if clientv3.LeaseID(holder.Lease) == s.LeaseID() {
			if err := s.c.deleteIfEpoch(ctx, l.key, holder.CreateRevision); err != nil {
				return nil, fmt.Errorf("acquire %s: replace own stale lease: %w", l.p, err)
			}
			continue
		}
		s.log.Debug("partition held by another node, waiting",
			zap.String("topic", topic), zap.Int32("partition", partition), zap.ByteString("holder", holder.Value))
		if err := s.waitDeleted(ctx, l.key, resp.Header.Revision); err != nil {
			return nil, fmt.Errorf("acquire %s: %w", l.p, err)
		}
	}
}

// waitDeleted returns once key is deleted after revision rev, the session ends, or ctx does.
func (s *Session) waitDeleted(ctx context.Context, key string, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	go func() { // the watch knows nothing of the session
		select {
		case <-s.Done():
			cancel()
		case <-wctx.Done():
		}
	}()
	for resp := range s.c.etcd.Watch(wctx, key, clientv3.WithRev(rev+1)) {
		if resp.Err() != nil {
			return nil // compacted or canceled: the caller looks again
		}
		for _, ev := range resp.Events {
			if ev.Type == mvccpb.DELETE {
				return nil
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if s.done() {
		return ErrSessionDone
	}
	return nil
}

// ReleaseStray deletes this session's lease of p if it is still the one of epoch: a lease
// no activation holds (an Acquire that etcd applied but whose answer was lost, or a
// release that failed), which would otherwise keep the partition from its owner until
// this session ends.
func (s *Session) ReleaseStray(ctx context.Context, p Partition, epoch int64) error {
	key := s.c.keys.Lease(p.Topic, p.Partition)
	_, err := s.c.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", epoch), clientv3.Compare(clientv3.LeaseValue(key), "=", s.LeaseID())).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return fmt.Errorf("release stray lease of %s (epoch %d): %w", p, epoch, err)
	}
	return nil
}

// deleteIfEpoch deletes key if its CreateRevision is still epoch.
func (c *Client) deleteIfEpoch(ctx context.Context, key string, epoch int64) error {
	_, err := c.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", epoch)).
		Then(clientv3.OpDelete(key)).
		Commit()
	return err
}

// Partition is the partition this lease is for.
func (l *Lease) Partition() Partition { return l.p }

// Epoch is the lease's epoch.
func (l *Lease) Epoch() int64 { return l.epoch }

// TopicIncarnation is the incarnation of the topic the lease is of
// (TopicSpec.Incarnation).
func (l *Lease) TopicIncarnation() int64 { return l.incarnation }

// Session is the session that holds the lease.
func (l *Lease) Session() *Session { return l.s }

// HWM reads the partition's committed high-water mark from etcd.
func (l *Lease) HWM(ctx context.Context) (int64, error) {
	return l.s.c.HWM(ctx, l.p.Topic, l.p.Partition)
}

// LogStart returns the partition's first indexed offset, hwm (its high-water mark) when
// its index is empty. The holder reads it once it holds the lease: only the holder
// changes the index after that.
func (l *Lease) LogStart(ctx context.Context, hwm int64) (int64, error) {
	return l.s.c.logStart(ctx, l.p.Topic, l.p.Partition, hwm, 0)
}

// Commit indexes a segment and advances the high-water mark past it, in one transaction
// guarded by the lease's epoch and by the high-water mark being meta.Base. On a failed
// guard it writes nothing and returns a FenceError (ErrFenced).
//
// Transient etcd errors are retried until ctx ends. A retry of a commit that had in fact
// been applied is recognised (the same segment meta, epoch included, is indexed, or the
// high-water mark under this lease is past it) and reported as success, so the outcome
// of Commit is never ambiguous while it returns nil or ErrFenced; when a lost attempt
// cannot be told apart (the lease passed on and the next owner wrote past the segment)
// it returns ErrOutcomeUnknown. It returns the revision of the commit.
func (l *Lease) Commit(ctx context.Context, meta SegmentMeta) (int64, error) {
	return l.CommitWithProducers(ctx, meta, ProducerChanges{})
}

// CommitWithProducers is Commit that also writes changes to the partition's idempotent
// producer states in the same transaction, so that they always describe exactly the
// committed log.
func (l *Lease) CommitWithProducers(ctx context.Context, meta SegmentMeta, producers ProducerChanges) (int64, error) {
	if meta.Epoch == 0 {
		meta.Epoch = l.epoch
	}
	switch {
	case meta.Epoch != l.epoch:
		return 0, invalidf("segment of epoch %d committed under epoch %d", meta.Epoch, l.epoch)
	case meta.Base < 0 || meta.Last < meta.Base:
		return 0, invalidf("segment offsets [%d, %d]", meta.Base, meta.Last)
	case meta.Records < 1 || meta.Records-1 > meta.Last-meta.Base:
		return 0, invalidf("%d records cannot span offsets [%d, %d]", meta.Records, meta.Base, meta.Last)
	case meta.Object == "":
		return 0, invalidf("segment [%d, %d] has no object", meta.Base, meta.Last)
	}
	segKey := l.s.c.keys.Segment(l.p.Topic, l.p.Partition, meta.Base)
	val := mustJSON(meta)
	next := strconv.FormatInt(meta.Last+1, 10)
	producerOps, err := producers.ops(l.s.c.keys, l.p, l.MaxProducerChanges())
	if err != nil {
		return 0, fmt.Errorf("commit %s [%d, %d]: %w", l.p, meta.Base, meta.Last, err)
	}
	puts := append([]clientv3.Op{clientv3.OpPut(segKey, val), clientv3.OpPut(l.hwmKey, next)}, producerOps...)
	var rev int64
	// An attempt cut short by its timeout (retry) may still have been applied; the retry
	// recognises it below. lost is set once an attempt went out and its answer did not
	// come back.
	lost := false
	err = retry(ctx, func(ctx context.Context) error {
		resp, err := l.s.c.etcd.Txn(ctx).
			If(
				clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.epoch),
				clientv3.Compare(clientv3.Value(l.hwmKey), "=", strconv.FormatInt(meta.Base, 10)),
				clientv3.Compare(clientv3.CreateRevision(segKey), "=", 0),
			).
			Then(puts...).
			Else(clientv3.OpGet(l.key), clientv3.OpGet(l.hwmKey), clientv3.OpGet(segKey)).
			Commit()
		if err != nil {
			lost = true
			return err
		}
		if resp.Succeeded {
			rev = resp.Header.Revision
			return nil
		}
		holder, hwm, seg := firstKV(resp, 0), firstKV(resp, 1), firstKV(resp, 2)
		fe := &FenceError{Topic: l.p.Topic, Partition: l.p.Partition, Epoch: l.epoch, ExpectedHWM: meta.Base, HWM: -1}
		if holder != nil {
			fe.Holder = holder.CreateRevision
		}
		if hwm != nil {
			fe.HWM, _ = strconv.ParseInt(string(hwm.Value), 10, 64)
		}
		// The segment key holding exactly this meta (epoch included) can only have been
		// written by an earlier attempt of this very commit: it was applied.
		if seg != nil && string(seg.Value) == val {
			rev = seg.ModRevision
			return nil
		}
		// The high-water mark just past this segment, under this lease, after an attempt
		// whose answer was lost: only this lease's writer moves it, a commit at a time
		// from where it left it, so that attempt was applied, and the segment's key has
		// changed since (the compactor, which reads the index from etcd, merged, linked
		// or expired the segment before this retry).
		if lost && fe.Holder == l.epoch && hwm != nil && fe.HWM == meta.Last+1 {
			rev = hwm.ModRevision
			return nil
		}
		// Under another lease since, past this segment's end: the lost attempt may have
		// been applied and the next owner written on (or rewritten the segment), or not
		// and the next owner written from the base over it. A FenceError says nothing
		// was written, which is not known. (Below its end the attempt was not applied:
		// it would have set the mark past it, and marks only grow.)
		if lost && fe.Holder != l.epoch && fe.HWM > meta.Last {
			return fmt.Errorf("%w: an attempt's answer was lost, and the partition has passed to epoch %d, its high-water mark at %d",
				ErrOutcomeUnknown, fe.Holder, fe.HWM)
		}
		return fe
	}, isPermanent)
	if err != nil {
		if errors.Is(err, ErrFenced) {
			l.log.Warn("commit fenced", zap.Error(err))
		}
		return 0, fmt.Errorf("commit %s [%d, %d]: %w", l.p, meta.Base, meta.Last, err)
	}
	return rev, nil
}

// Release deletes the lease key if it is still this lease's (same epoch). It returns a
// FenceError if the lease was already lost; another owner's lease is never touched.
func (l *Lease) Release(ctx context.Context) error {
	if err := l.fenced(ctx, clientv3.OpDelete(l.key)); err != nil {
		return fmt.Errorf("release %s: %w", l.p, err)
	}
	l.log.Info("partition lease released")
	return nil
}

// fenced applies ops in one transaction if the lease is still this one (same epoch), and
// returns a FenceError naming the current holder if not.
func (l *Lease) fenced(ctx context.Context, ops ...clientv3.Op) error {
	resp, err := l.s.c.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.epoch)).
		Then(ops...).
		Else(clientv3.OpGet(l.key)).
		Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		fe := &FenceError{Topic: l.p.Topic, Partition: l.p.Partition, Epoch: l.epoch}
		if kv := firstKV(resp, 0); kv != nil {
			fe.Holder = kv.CreateRevision
		}
		return fe
	}
	return nil
}

func firstKV(resp *clientv3.TxnResponse, i int) *mvccpb.KeyValue {
	if r := resp.Responses[i].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
		return r.Kvs[0]
	}
	return nil
}

// isPermanent says which errors retrying cannot fix.
func isPermanent(err error) bool {
	return errors.Is(err, ErrFenced) || errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrOutcomeUnknown) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, rpctypes.ErrLeaseNotFound)
}
