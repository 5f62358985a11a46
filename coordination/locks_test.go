package coordination_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/streamhouse/streamhouse/coordination"
)

func TestTryLockIsExclusiveAndEndsWithTheSession(t *testing.T) {
	c := newClient(t)
	a, b := mustSession(t, c, "a", 0), mustSession(t, c, "b", 0)
	ctx := ctxT(t)
	unlockA, err := a.TryLock(ctx, "chore")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryLock(ctx, "chore"); !errors.Is(err, coordination.ErrLocked) {
		t.Fatalf("second session: %v, want ErrLocked", err)
	}
	// The holder is one key under the lock's prefix, named by its session's lease.
	want := fmt.Sprintf("%s/%x", c.Keys().Lock("chore"), a.LeaseID())
	if _, ok := dump(t, c)[want]; !ok || countPrefix(t, c, c.Keys().Lock("chore")+"/") != 1 {
		t.Fatalf("lock keys: %v, want only %s", dump(t, c), want)
	}
	if _, err := b.TryLock(ctx, "other chore"); err != nil {
		t.Fatalf("another lock name: %v", err)
	}
	if err := unlockA(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryLock(ctx, "chore"); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	// B holds it; B's session ends (an agent that died): A gets it without waiting.
	if _, err := a.TryLock(ctx, "chore"); !errors.Is(err, coordination.ErrLocked) {
		t.Fatalf("while B holds it: %v, want ErrLocked", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.TryLock(ctx, "chore"); err != nil {
		t.Fatalf("after the holder's session ended: %v", err)
	}
}

func TestObjectIndexNamesEveryCommittedObject(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 3)
	s := mustSession(t, c, "a", 0)
	ctx := ctxT(t)
	want := map[string]bool{}
	for p := range int32(3) {
		l, err := s.Acquire(ctx, "t", p)
		if err != nil {
			t.Fatal(err)
		}
		// More segments than a page, on several partitions; two share an object.
		for base := int64(0); base < 700; base++ {
			m := segment(base, 1, l.Epoch())
			m.Object = objectKey("t", p, base/2, 0)
			if _, err := l.Commit(ctx, m); err != nil {
				t.Fatal(err)
			}
			want[m.Object] = true
		}
	}
	x, err := c.ObjectIndex(ctx)
	if err != nil || x.Revision == 0 {
		t.Fatalf("ObjectIndex: %+v, %v", x, err)
	}
	got := x.Indexed
	if len(got) != len(want) {
		t.Fatalf("%d objects, want %d", len(got), len(want))
	}
	for o := range want {
		if !got[o] {
			t.Fatalf("object %s missing", o)
		}
	}
	// Another cluster's index (another root on the same etcd) is not this one's.
	if other, err := newClient(t).ObjectIndex(ctx); err != nil || len(other.Indexed) != 0 {
		t.Fatalf("an empty cluster names objects: %+v, %v", other, err)
	}
}

// TestObjectIndexNamesObjectsOfEveryTopic: the sweeper's index names the objects of every
// partition of every topic, read partition by partition: one of more keys than a page, a
// deleted topic's (not yet purged), and those of an index whose topic key is gone (a key
// deleted by hand), which only the whole pass it then makes finds.
func TestObjectIndexNamesObjectsOfEveryTopic(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t)
	mustTopic(t, c, "a", 2)
	mustTopic(t, c, "b", 1)
	want := map[string]bool{}
	index := func(topic string, p int32, n int) {
		for _, m := range writeIndex(t, c, topic, p, 0, slices.Repeat([]int64{1}, n)) {
			want[m.Object] = true
		}
	}
	index("a", 0, 1500)
	index("a", 1, 10)
	index("b", 0, 5)
	if err := c.DeleteTopic(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		x, err := c.ObjectIndex(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(x.Indexed) != len(want) {
			t.Fatalf("%d objects, want %d", len(x.Indexed), len(want))
		}
		for o := range want {
			if !x.Indexed[o] {
				t.Fatalf("object %s missing", o)
			}
		}
	}
	check()
	index("gone", 0, 3) // no topic key
	check()
}
