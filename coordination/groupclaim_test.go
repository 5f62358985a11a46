package coordination_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/coordination"
)

// orders100 is a client whose topic orders has one partition of 100 records, written
// by session a, and at, a commit of offset o on that partition.
func orders100(t *testing.T) (*coordination.Client, *coordination.Session, func(o int64) map[coordination.Partition]coordination.GroupOffset) {
	t.Helper()
	c := newClient(t)
	mustTopic(t, c, "orders", 1)
	a := mustSession(t, c, "a", 0)
	l, err := a.Acquire(ctxT(t), "orders", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Commit(ctxT(t), segment(0, 100, 0)); err != nil {
		t.Fatal(err)
	}
	return c, a, func(o int64) map[coordination.Partition]coordination.GroupOffset {
		return map[coordination.Partition]coordination.GroupOffset{{Topic: "orders", Partition: 0}: {Offset: o}}
	}
}

// TestGroupClaimFencesTheCoordinatorItReplaced: a group's coordinator whose session ended
// without its knowing (its lease revoked in etcd, as a pause past the TTL does) commits
// nothing once another session has claimed the group, and no claim is taken from a live
// holder.
func TestGroupClaimFencesTheCoordinatorItReplaced(t *testing.T) {
	c, a, at := orders100(t)
	b := mustSession(t, c, "b", 0)
	ctx := ctxT(t)
	p0 := coordination.Partition{Topic: "orders", Partition: 0}
	committed := func() int64 {
		t.Helper()
		got, err := c.FetchOffsets(ctx, "billing")
		if err != nil {
			t.Fatal(err)
		}
		return got[p0].Offset
	}

	ca, err := a.ClaimGroup(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.CommitOffsets(ctx, at(10)); err != nil {
		t.Fatal(err)
	}
	before := dump(t, c)
	if _, err := b.ClaimGroup(ctx, "billing"); !errors.Is(err, coordination.ErrGroupClaimed) {
		t.Fatalf("claim of a group another live session holds: %v, want ErrGroupClaimed", err)
	}
	if after := dump(t, c); !reflect.DeepEqual(after, before) {
		t.Fatalf("a refused claim wrote: before %v, after %v", before, after)
	}

	// a's lease ends in etcd (a pause past its TTL), a knows nothing yet; b takes over.
	if _, err := etcdClient(t, etcd.Endpoint).Revoke(ctx, a.LeaseID()); err != nil {
		t.Fatal(err)
	}
	cb, err := b.ClaimGroup(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if cb.Epoch() <= ca.Epoch() {
		t.Fatalf("new claim's epoch %d, not above the old one's %d", cb.Epoch(), ca.Epoch())
	}
	if err := cb.CommitOffsets(ctx, at(20)); err != nil {
		t.Fatal(err)
	}
	if err := ca.CommitOffsets(ctx, at(15)); !errors.Is(err, coordination.ErrFenced) {
		t.Fatalf("commit through the replaced claim: %v, want ErrFenced", err)
	}
	if got := committed(); got != 20 {
		t.Fatalf("committed offset %d, want the new coordinator's 20", got)
	}
	// The old claim's release leaves the new one alone.
	if err := ca.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cb.CommitOffsets(ctx, at(25)); err != nil {
		t.Fatalf("commit after the old claim's release: %v", err)
	}

	// The same session claiming again replaces its claim: the forgotten one is fenced.
	cb2, err := b.ClaimGroup(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if err := cb.CommitOffsets(ctx, at(30)); !errors.Is(err, coordination.ErrFenced) {
		t.Fatalf("commit through a claim its own session replaced: %v, want ErrFenced", err)
	}
	if err := cb2.CommitOffsets(ctx, at(35)); err != nil || committed() != 35 {
		t.Fatalf("commit through the new claim: %v, offset %d", err, committed())
	}
	// Released, the group is free at once for another session.
	if err := cb2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	d := mustSession(t, c, "d", 0)
	if _, err := d.ClaimGroup(ctx, "billing"); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	if _, err := d.ClaimGroup(ctx, ""); !errors.Is(err, coordination.ErrInvalidArgument) {
		t.Fatalf("claim of an empty group name: %v", err)
	}
}

// TestCommitWithoutAClaimWaitsForTheCoordinator: offsets committed without a claim (the
// gRPC API's, an operator's `streamctl group commit`) are refused, and write nothing,
// while a coordinator holds the group: they would move its members' offsets under them.
// Once the claim ends they are taken again.
func TestCommitWithoutAClaimWaitsForTheCoordinator(t *testing.T) {
	c, a, at := orders100(t)
	ctx := ctxT(t)
	p0 := coordination.Partition{Topic: "orders", Partition: 0}
	if err := c.CommitOffsets(ctx, "billing", at(5)); err != nil {
		t.Fatalf("commit to a group nobody coordinates: %v", err)
	}
	claim, err := a.ClaimGroup(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if err := claim.CommitOffsets(ctx, at(40)); err != nil {
		t.Fatal(err)
	}
	before := dump(t, c)
	err = c.CommitOffsets(ctx, "billing", at(10))
	if !errors.Is(err, coordination.ErrGroupClaimed) {
		t.Fatalf("commit without the claim of a coordinated group: %v, want ErrGroupClaimed", err)
	}
	if !strings.Contains(err.Error(), "coordinator is a ") {
		t.Errorf("the refusal does not name the coordinator: %v", err)
	}
	if after := dump(t, c); !reflect.DeepEqual(after, before) {
		t.Fatalf("a refused commit wrote: before %v, after %v", before, after)
	}
	// Another group is not held back by billing's claim.
	if err := c.CommitOffsets(ctx, "audit", at(10)); err != nil {
		t.Fatalf("commit to another group: %v", err)
	}
	if err := claim.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.CommitOffsets(ctx, "billing", at(10)); err != nil {
		t.Fatalf("commit once the claim is released: %v", err)
	}
	got, err := c.FetchOffsets(ctx, "billing")
	if err != nil || got[p0].Offset != 10 {
		t.Fatalf("offset %d (%v), want 10", got[p0].Offset, err)
	}
}

// A Kafka group's coordinator commits offsets past the high-water mark, as Kafka does (a
// consumer of a topic deleted and created again commits its old positions, and Kafka
// clients take a refused commit as fatal); a commit without a claim is still bounded by
// it, and a negative offset is refused either way.
func TestClaimCommitsPastTheHighWaterMark(t *testing.T) {
	c, a, at := orders100(t)
	ctx := ctxT(t)
	claim, err := a.ClaimGroup(ctx, "kafka")
	if err != nil {
		t.Fatal(err)
	}
	if err := claim.CommitOffsets(ctx, at(1<<40)); err != nil {
		t.Fatalf("a coordinator's commit past the high-water mark: %v", err)
	}
	if got, err := c.FetchOffsets(ctx, "kafka"); err != nil || got[coordination.Partition{Topic: "orders"}].Offset != 1<<40 {
		t.Fatalf("committed %v, %v; want 2^40", got, err)
	}
	before := dump(t, c)
	if err := claim.CommitOffsets(ctx, at(-1)); !errors.Is(err, coordination.ErrOffsetOutOfRange) {
		t.Fatalf("a coordinator's commit of a negative offset: %v, want ErrOffsetOutOfRange", err)
	}
	if err := c.CommitOffsets(ctx, "grpc", at(101)); !errors.Is(err, coordination.ErrOffsetOutOfRange) {
		t.Fatalf("a commit without a claim past the high-water mark: %v, want ErrOffsetOutOfRange", err)
	}
	if after := dump(t, c); !reflect.DeepEqual(after, before) {
		t.Fatal("refused commits wrote")
	}
}
