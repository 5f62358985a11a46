package coordination_test

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/streamhouse/streamhouse/coordination"
)

// partSegment is segment() for partition p of topic "t".
func partSegment(p int32, base, n, epoch int64) coordination.SegmentMeta {
	m := segment(base, n, epoch)
	m.Object = objectKey("t", p, base, epoch)
	return m
}

// TestCommitterGroupsPartitions: partitions committing at the same time share etcd
// transactions, and every partition's log is exactly what its writer was acked.
func TestCommitterGroupsPartitions(t *testing.T) {
	const partitions, rounds = 8, 25
	c := newClient(t)
	mustTopic(t, c, "t", partitions)
	s := mustSession(t, c, "a", 0)
	ctx := ctxT(t)
	leases := make([]*coordination.Lease, partitions)
	for p := range leases {
		l, err := s.Acquire(ctx, "t", int32(p))
		if err != nil {
			t.Fatal(err)
		}
		leases[p] = l
	}
	g := c.NewCommitter()
	start, err := c.Etcd().Get(ctx, "revision probe")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for p, l := range leases {
		wg.Go(func() {
			for r := range int64(rounds) {
				if _, err := g.Commit(ctx, l, partSegment(int32(p), r*10, 10, l.Epoch())); err != nil {
					t.Errorf("partition %d round %d: %v", p, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	end, err := c.Etcd().Get(ctx, "revision probe")
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(partitions) {
		segs, hwm, err := c.Segments(ctx, "t", p, 0, 0)
		if err != nil || hwm != rounds*10 || len(segs) != rounds {
			t.Fatalf("partition %d: %d segments, hwm %d, %v; want %d, %d", p, len(segs), hwm, err, rounds, rounds*10)
		}
		for i, m := range segs {
			if want := partSegment(p, int64(i)*10, 10, leases[p].Epoch()); m != want {
				t.Fatalf("partition %d segment %d: %+v, want %+v", p, i, m, want)
			}
		}
	}
	// Every applied transaction is one revision: fewer revisions than commits means
	// commits shared transactions.
	txns, commits := end.Header.Revision-start.Header.Revision, int64(partitions*rounds)
	if txns >= commits {
		t.Fatalf("%d commits took %d transactions: none was shared", commits, txns)
	}
	t.Logf("%d commits in %d transactions (%.1f segments each)", commits, txns, float64(commits)/float64(txns))
}

// TestCommitterGroupWithAFencedLease: a group holding a segment of a lease that was lost
// applies nothing as a group; the fenced segment fails with ErrFenced and writes nothing,
// the others commit on their own, and a segment whose high-water mark moved is refused.
func TestCommitterGroupWithAFencedLease(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 3)
	a, b := mustSession(t, c, "a", 0), mustSession(t, c, "b", 0)
	ctx := ctxT(t)
	var leases []*coordination.Lease
	for p := range int32(3) {
		l, err := a.Acquire(ctx, "t", p)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	g := c.NewCommitter()
	metas := []coordination.SegmentMeta{partSegment(0, 0, 5, leases[0].Epoch()), partSegment(1, 0, 5, leases[1].Epoch()), partSegment(2, 0, 5, leases[2].Epoch())}
	revs, errs := g.CommitTogether(ctx, leases, metas)
	for i, err := range errs {
		if err != nil || revs[i] != revs[0] {
			t.Fatalf("segment %d: revision %d, %v; want one transaction for all (revisions %v)", i, revs[i], err, revs)
		}
	}

	// Partition 1's lease is lost (A paused past its TTL from 1's point of view: B took it).
	if err := leases[1].Release(ctx); err != nil {
		t.Fatal(err)
	}
	lb, err := b.Acquire(ctx, "t", 1)
	if err != nil {
		t.Fatal(err)
	}
	before := dump(t, c)
	stale := partSegment(2, 0, 5, leases[2].Epoch()) // partition 2's hwm is 5 already
	revs, errs = g.CommitTogether(ctx, leases, []coordination.SegmentMeta{
		partSegment(0, 5, 5, leases[0].Epoch()), partSegment(1, 5, 5, leases[1].Epoch()), withObject(stale, "other")})
	var fe *coordination.FenceError
	if errs[0] != nil || revs[0] == 0 {
		t.Fatalf("partition 0 in a group with a fenced lease: %v", errs[0])
	}
	if !errors.As(errs[1], &fe) || fe.Holder != lb.Epoch() {
		t.Fatalf("fenced partition 1: %v, want a FenceError naming epoch %d", errs[1], lb.Epoch())
	}
	if !errors.As(errs[2], &fe) || fe.HWM != 5 || fe.ExpectedHWM != 0 {
		t.Fatalf("partition 2 at a stale hwm: %v, want a FenceError about the hwm", errs[2])
	}
	after := dump(t, c)
	for k := range after {
		if before[k] != after[k] && k != c.Keys().HWM("t", 0) && k != c.Keys().Segment("t", 0, 5) {
			t.Errorf("key %s changed from %q to %q: only partition 0 may have moved", k, before[k], after[k])
		}
	}
	if segs, hwm, err := c.Segments(ctx, "t", 1, 0, 0); err != nil || hwm != 5 || !reflect.DeepEqual(segs, metas[1:2]) {
		t.Fatalf("fenced partition 1: %+v hwm %d, %v", segs, hwm, err)
	}
}

func withObject(m coordination.SegmentMeta, object string) coordination.SegmentMeta {
	m.Object = fmt.Sprintf("%s-%s", m.Object, object)
	return m
}
