package coordination_test

import (
	"errors"
	"fmt"
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
