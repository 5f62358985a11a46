package coordination

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// SegmentRange returns a partition's committed segments whose base is ≥ fromBase, in
// offset order, read in pages at one revision, and that revision. It is how a partition's
// owner loads its index (fromBase 0) and then reads what it committed since.
func (c *Client) SegmentRange(ctx context.Context, topic string, partition int32, fromBase int64) ([]SegmentMeta, int64, error) {
	var out []SegmentMeta
	rev, err := c.eachSegment(ctx, topic, partition, fromBase, func(m SegmentMeta) error {
		out = append(out, m)
		return nil
	})
	return out, rev, err
}

// FirstSegment returns a partition's first committed segment whose base is ≥ fromBase
// and that match accepts, reading its index in pages from fromBase only as far as that
// segment; false when none does.
func (c *Client) FirstSegment(ctx context.Context, topic string, partition int32, fromBase int64, match func(SegmentMeta) bool) (SegmentMeta, bool, error) {
	var found SegmentMeta
	_, err := c.eachSegment(ctx, topic, partition, fromBase, func(m SegmentMeta) error {
		if match(m) {
			found = m
			return errScanDone
		}
		return nil
	})
	if errors.Is(err, errScanDone) {
		return found, true, nil
	}
	return found, false, err
}

// eachSegment calls fn with a partition's committed segments whose base is ≥ fromBase,
// in offset order, read in pages at one revision, until fn returns an error; it returns
// that revision.
func (c *Client) eachSegment(ctx context.Context, topic string, partition int32, fromBase int64, fn func(SegmentMeta) error) (int64, error) {
	start := c.keys.Segment(topic, partition, max(fromBase, 0))
	end := clientv3.GetPrefixRangeEnd(c.keys.Segments(topic, partition))
	rev, err := c.scanRange(ctx, start, end, 0, func(kv *mvccpb.KeyValue) error {
		m, err := decodeSegment(kv)
		if err != nil {
			return err
		}
		return fn(m)
	})
	if err != nil && !errors.Is(err, errScanDone) {
		return rev, fmt.Errorf("segments %s/%d from base %d: %w", topic, partition, fromBase, err)
	}
	return rev, err
}

// errScanDone ends a scan early, from its callback.
var errScanDone = errors.New("scan done")

// PartitionStats describes a partition's stored log.
type PartitionStats struct {
	LogStart, HWM int64
	Segments      int64 // keys in the segment index
	StoredBytes   int64 // compressed bytes of those segments
}

// PartitionStats reads a partition's segment index (in pages, at one revision) and its
// high-water mark at that revision.
func (c *Client) PartitionStats(ctx context.Context, topic string, partition int32) (PartitionStats, error) {
	var st PartitionStats
	if _, _, err := c.checkPartition(ctx, topic, partition); err != nil {
		return st, err
	}
	segs, rev, err := c.SegmentRange(ctx, topic, partition, 0)
	if err != nil {
		return st, err
	}
	resp, err := c.etcd.Get(ctx, c.keys.HWM(topic, partition), clientv3.WithRev(rev))
	if err != nil {
		return st, fmt.Errorf("stats of %s/%d: %w", topic, partition, err)
	}
	if st.HWM, err = parseHWM(resp.Kvs); err != nil {
		return st, err
	}
	st.LogStart, st.Segments = st.HWM, int64(len(segs))
	if len(segs) > 0 {
		st.LogStart = segs[0].Base
	}
	for _, m := range segs {
		st.StoredBytes += m.ZBytes
	}
	return st, nil
}

// Rewrite takes old, a run of adjacent segments of the lease's partition (oldest first,
// as read at revision asOf or later), out of the index and puts with in their place: one
// segment holding exactly their offsets (a merge), or nothing (retention). When tomb names
// objects, a tombstone records them in the same transaction, so that the sweeper keeps
// them a grace period from now.
//
// The transaction is guarded by the lease's epoch (FenceError), by both ends of the run
// being indexed and by no key of the run having changed after asOf (ErrIndexChanged):
// only the owner changes its partition's index, so a failed guard means the caller's view
// of it is stale. A retry of an attempt that was applied but whose answer was lost is
// recognised and reported as success. It returns the revision of the change.
func (l *Lease) Rewrite(ctx context.Context, old []SegmentMeta, asOf int64, with *SegmentMeta, tomb *Tombstone) (int64, error) {
	if err := checkRun(old, with, l.epoch); err != nil {
		return 0, err
	}
	keys := l.s.c.keys
	first, last := old[0], old[len(old)-1]
	firstKey := keys.Segment(l.p.Topic, l.p.Partition, first.Base)
	lastKey := keys.Segment(l.p.Topic, l.p.Partition, last.Base)
	end := lastKey + "\x00"
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.epoch),
		clientv3.Compare(clientv3.Version(firstKey), ">", 0),
		clientv3.Compare(clientv3.Version(lastKey), ">", 0),
		clientv3.Compare(clientv3.ModRevision(firstKey), "<", asOf+1).WithRange(end),
	}
	// A merged segment replaces the first key; etcd refuses a put inside a range deleted
	// by the same transaction, so the range deleted starts after it.
	var ops []clientv3.Op
	var val string
	deleteFrom := firstKey
	if with != nil {
		val = mustJSON(with)
		ops = append(ops, clientv3.OpPut(firstKey, val))
		deleteFrom = firstKey + "\x00"
	}
	if len(old) > 1 || with == nil {
		ops = append(ops, clientv3.OpDelete(deleteFrom, clientv3.WithRange(end)))
	}
	if tomb != nil && len(tomb.Objects) > 0 {
		t := *tomb
		t.RemovedAt = l.s.c.now()
		id := PadOffset(l.epoch) + "-" + PadOffset(l.rewrites.Add(1))
		ops = append(ops, clientv3.OpPut(keys.Tombstone(l.p.Topic, l.p.Partition, id), mustJSON(t)))
	}
	var rev int64
	err := retry(ctx, func(ctx context.Context) error {
		resp, err := l.s.c.etcd.Txn(ctx).If(cmps...).Then(ops...).
			Else(clientv3.OpGet(l.key), clientv3.OpGet(firstKey), clientv3.OpGet(deleteFrom, clientv3.WithRange(end), clientv3.WithCountOnly())).
			Commit()
		if err != nil {
			return err
		}
		rev = resp.Header.Revision
		if resp.Succeeded {
			return nil
		}
		holder, head := firstKV(resp, 0), firstKV(resp, 1)
		if holder == nil || holder.CreateRevision != l.epoch {
			fe := &FenceError{Topic: l.p.Topic, Partition: l.p.Partition, Epoch: l.epoch, HWM: -1}
			if holder != nil {
				fe.Holder = holder.CreateRevision
			}
			return fe
		}
		// Applied by an earlier attempt: the run is gone, and the merged segment (whose
		// object name is new) is in its place.
		rest := resp.Responses[2].GetResponseRange().Count
		if rest == 0 && ((with == nil && head == nil) || (with != nil && head != nil && string(head.Value) == val)) {
			return nil
		}
		return fmt.Errorf("%w: %s [%d, %d] as of revision %d", ErrIndexChanged, l.p, first.Base, last.Last, asOf)
	}, func(err error) bool { return isPermanent(err) || errors.Is(err, ErrIndexChanged) })
	if err != nil {
		if errors.Is(err, ErrFenced) {
			l.log.Warn("index rewrite fenced", zap.Error(err))
		}
		return 0, fmt.Errorf("rewrite %s [%d, %d]: %w", l.p, first.Base, last.Last, err)
	}
	return rev, nil
}

// checkRun validates a rewrite: old is a non-empty run of adjacent segments and with, if
// any, is a segment of this epoch holding exactly its offsets.
func checkRun(old []SegmentMeta, with *SegmentMeta, epoch int64) error {
	if len(old) == 0 {
		return invalidf("rewrite of no segments")
	}
	for i := 1; i < len(old); i++ {
		if old[i].Base != old[i-1].Last+1 {
			return invalidf("segments [%d, %d] and [%d, %d] are not adjacent", old[i-1].Base, old[i-1].Last, old[i].Base, old[i].Last)
		}
	}
	if with == nil {
		return nil
	}
	first, last := old[0], old[len(old)-1]
	switch {
	case with.Base != first.Base || with.Last != last.Last:
		return invalidf("merged segment [%d, %d] does not hold exactly [%d, %d]", with.Base, with.Last, first.Base, last.Last)
	case with.Epoch != epoch:
		return invalidf("merged segment of epoch %d written under epoch %d", with.Epoch, epoch)
	case with.Records < 1:
		return invalidf("merged segment [%d, %d] has no records", with.Base, with.Last)
	}
	if err := with.check(); err != nil {
		return invalidf("merged segment [%d, %d]: %v", with.Base, with.Last, err)
	}
	return nil
}

// ObjectIndex is what the orphan sweeper needs from etcd, read at one revision: the
// objects named by the segment index, and when each object named by a tombstone was last
// taken out of it.
type ObjectIndex struct {
	Revision int64
	Indexed  map[string]bool
	Removed  map[string]TombstoneRef // by object: its latest tombstone
	// Tombstones lists every tombstone key with its time, for Client.DeleteTombstones.
	Tombstones []TombstoneRef
}

// TombstoneRef is one tombstone key and when its segments were removed.
type TombstoneRef struct {
	Key       string
	RemovedAt int64 // Unix milliseconds
}

// ObjectIndex reads the segment index (every topic, deleted ones included) and the
// tombstones at one revision, in pages. An object not in Indexed was not committed at
// that revision.
func (c *Client) ObjectIndex(ctx context.Context) (*ObjectIndex, error) {
	x := &ObjectIndex{Indexed: map[string]bool{}, Removed: map[string]TombstoneRef{}}
	rev, err := c.scanSegments(ctx, func(kv *mvccpb.KeyValue) error {
		m, err := decodeSegment(kv)
		for _, o := range m.Objects() {
			x.Indexed[o] = true
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the segment index: %w", err)
	}
	x.Revision = rev
	if _, err := c.scan(ctx, c.keys.Tombstones(), rev, func(kv *mvccpb.KeyValue) error {
		var t Tombstone
		if err := json.Unmarshal(kv.Value, &t); err != nil {
			return fmt.Errorf("tombstone %s: bad value %q", kv.Key, kv.Value)
		}
		ref := TombstoneRef{Key: string(kv.Key), RemovedAt: t.RemovedAt.UnixMilli()}
		x.Tombstones = append(x.Tombstones, ref)
		for _, o := range t.Objects {
			if ref.RemovedAt > x.Removed[o].RemovedAt {
				x.Removed[o] = ref
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read the tombstones: %w", err)
	}
	return x, nil
}

// scanSegments calls fn for every segment key of every topic, deleted ones included, at
// one revision, and returns it. It reads the topics, then each partition's index in
// pages: etcd counts every key from a page's first to its range's end, so pages over the
// whole segments prefix would make a read of N keys visit about N²/2000 of them (1.1
// billion for the 1.5 million keys of docs/operations.md's sizing), holding etcd's index
// lock for each. Then it counts the whole prefix at that revision (one walk) and, should
// any key lie outside the topics' partitions (a topic key deleted by hand), reads it all
// again in one pass (fn then sees some keys twice), since an object left out would be
// deleted by the sweeper.
func (c *Client) scanSegments(ctx context.Context, fn func(*mvccpb.KeyValue) error) (int64, error) {
	var specs []TopicSpec
	rev, err := c.scan(ctx, c.keys.Topics(), 0, func(kv *mvccpb.KeyValue) error {
		var spec TopicSpec
		if err := json.Unmarshal(kv.Value, &spec); err != nil {
			c.log.Warn("topic skipped by the segment scan", zap.ByteString("key", kv.Key), zap.Error(err))
			return nil // its partitions' keys are read by the whole pass below
		}
		specs = append(specs, spec)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list topics: %w", err)
	}
	seen := int64(0)
	count := func(kv *mvccpb.KeyValue) error {
		seen++
		return fn(kv)
	}
	for _, spec := range specs {
		for p := range spec.Partitions {
			if _, err := c.scan(ctx, c.keys.Segments(spec.Name, p), rev, count); err != nil {
				return 0, err
			}
		}
	}
	all := c.keys.Root() + SegmentsPrefix
	resp, err := c.etcd.Get(ctx, all, clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(rev))
	if err != nil {
		return 0, fmt.Errorf("count segment keys: %w", err)
	}
	if resp.Count == seen {
		return rev, nil
	}
	c.log.Warn("segment keys outside the topics' partitions: reading them all",
		zap.Int64("keys", resp.Count), zap.Int64("in_partitions", seen), zap.Int64("revision", rev))
	return c.scan(ctx, all, rev, fn)
}

// DeleteTombstones deletes tombstone keys, several per transaction.
func (c *Client) DeleteTombstones(ctx context.Context, keys []string) error {
	for len(keys) > 0 {
		n := min(len(keys), c.opts.MaxTxnOps)
		ops := make([]clientv3.Op, 0, n)
		for _, k := range keys[:n] {
			ops = append(ops, clientv3.OpDelete(k))
		}
		if _, err := c.etcd.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("delete %d tombstones: %w", n, err)
		}
		keys = keys[n:]
	}
	return nil
}
