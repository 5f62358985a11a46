package coordination_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/tests/harness"
)

func TestAcquireIsExclusiveUntilRelease(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 1)
	a, b := mustSession(t, c, "a", 0), mustSession(t, c, "b", 0)

	type result struct {
		l   *coordination.Lease
		err error
	}
	results := make(chan result, 2)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	for _, s := range []*coordination.Session{a, b} {
		go func() {
			l, err := s.Acquire(ctx, "t", 0)
			results <- result{l, err}
		}()
	}
	first := <-results
	if first.err != nil {
		t.Fatal(first.err)
	}
	// The other contender must still be waiting.
	select {
	case r := <-results:
		t.Fatalf("both contenders hold the partition: epochs %d and %v", first.l.Epoch(), r)
	case <-time.After(500 * time.Millisecond):
	}
	if err := first.l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	second := <-results
	if second.err != nil {
		t.Fatal(second.err)
	}
	if second.l.Session() == first.l.Session() || second.l.Epoch() <= first.l.Epoch() {
		t.Fatalf("second owner epoch %d after first %d", second.l.Epoch(), first.l.Epoch())
	}
	// The first owner can no longer write, and cannot release the new owner's lease.
	if _, err := first.l.Commit(ctx, segment(0, 10, first.l.Epoch())); !errors.Is(err, coordination.ErrFenced) {
		t.Fatalf("commit after release: %v, want ErrFenced", err)
	}
	if err := first.l.Release(ctx); !errors.Is(err, coordination.ErrFenced) {
		t.Fatalf("second release: %v, want ErrFenced", err)
	}
	if _, err := second.l.Commit(ctx, segment(0, 10, second.l.Epoch())); err != nil {
		t.Fatalf("new owner commit: %v", err)
	}
}

func TestAcquireAfterHolderSessionExpires(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 1)
	// A's session lives on its own etcd connection, so that closing the connection stops
	// its keep-alives the way a crashed or partitioned agent would, without a revoke.
	aEtcd := etcdClient(t, etcd.Endpoint)
	a := mustSession(t, clientOn(t, aEtcd, c.Keys().Root()), "a", time.Second)
	b := mustSession(t, c, "b", 0)
	la, err := a.Acquire(ctxT(t), "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = aEtcd.Close()
	crashed := time.Now()
	lb, err := b.Acquire(ctxT(t), "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	waited := time.Since(crashed)
	if lb.Epoch() <= la.Epoch() {
		t.Fatalf("epoch %d after expiry of epoch %d", lb.Epoch(), la.Epoch())
	}
	// B waited for the TTL rather than taking the lease from a holder that might be alive.
	if waited < 500*time.Millisecond {
		t.Fatalf("B acquired %s after A stopped, before A's 1s TTL could expire", waited)
	}
	t.Logf("B acquired %s after A stopped (TTL 1s)", waited.Round(time.Millisecond))
}

func TestPausedOwnerIsFenced(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 1)
	a, b := mustSession(t, c, "a", 0), mustSession(t, c, "b", 0)
	ctx := ctxT(t)
	la, err := a.Acquire(ctx, "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := la.Commit(ctx, segment(0, 5, la.Epoch())); err != nil {
		t.Fatal(err)
	}
	// A pauses (GC, SIGSTOP) for longer than its TTL: its lease is gone. Revoking it from
	// outside is what the expiry does.
	if _, err := c.Etcd().Revoke(ctx, a.LeaseID()); err != nil {
		t.Fatal(err)
	}
	lb, err := b.Acquire(ctx, "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := lb.HWM(ctx); err != nil || h != 5 {
		t.Fatalf("new owner sees hwm %d, %v; want 5", h, err)
	}
	if _, err := lb.Commit(ctx, segment(5, 5, lb.Epoch())); err != nil {
		t.Fatal(err)
	}
	// A wakes up and carries on where it was: both its stale hwm and a guessed fresh one
	// are refused.
	before := dump(t, c)
	for _, base := range []int64{5, 10} {
		_, err := la.Commit(ctx, segment(base, 5, la.Epoch()))
		var fe *coordination.FenceError
		if !errors.As(err, &fe) || fe.Holder != lb.Epoch() {
			t.Fatalf("paused owner commit at %d: %v, want a FenceError naming epoch %d", base, err, lb.Epoch())
		}
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatal("a fenced commit changed etcd")
	}
	segs, hwm, err := c.Segments(ctx, "t", 0, 0, 0)
	if err != nil || hwm != 10 || len(segs) != 2 || segs[0].Epoch != la.Epoch() || segs[1].Epoch != lb.Epoch() {
		t.Fatalf("segments %+v hwm %d, %v", segs, hwm, err)
	}
}

func TestCommitGuards(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 1)
	s := mustSession(t, c, "a", 0)
	ctx := ctxT(t)
	l := mustAcquire(t, s, "t", 0)
	hwms := []int64{}
	for base := int64(0); base < 50; base += 10 {
		if _, err := l.Commit(ctx, segment(base, 10, 0)); err != nil {
			t.Fatal(err)
		}
		h, _ := l.HWM(ctx)
		hwms = append(hwms, h)
	}
	for i := 1; i < len(hwms); i++ {
		if hwms[i] <= hwms[i-1] {
			t.Fatalf("hwm not strictly increasing: %v", hwms)
		}
	}
	before := dump(t, c)
	// A stale expected hwm (an older base, or a gap) is refused. (Segments of 7 records,
	// so that none is the replay of an applied commit.)
	for _, base := range []int64{0, 40, 49, 51, 60} {
		var fe *coordination.FenceError
		if _, err := l.Commit(ctx, segment(base, 7, 0)); !errors.As(err, &fe) || fe.HWM != 50 || fe.ExpectedHWM != base {
			t.Errorf("commit at %d with hwm 50: %v, want a FenceError about the hwm", base, err)
		}
	}
	// Malformed metas are refused before reaching etcd.
	bad := []coordination.SegmentMeta{
		{Object: "x", Base: 50, Last: 49, Records: 1},
		{Object: "x", Base: -1, Last: 3, Records: 1},
		{Object: "x", Base: 50, Last: 59, Records: 0},
		{Object: "x", Base: 50, Last: 59, Records: 11},
		{Object: "", Base: 50, Last: 59, Records: 10},
		{Object: "x", Base: 50, Last: 59, Records: 10, Epoch: l.Epoch() + 1},
	}
	for _, m := range bad {
		if _, err := l.Commit(ctx, m); !errors.Is(err, coordination.ErrInvalidArgument) {
			t.Errorf("commit %+v: %v, want ErrInvalidArgument", m, err)
		}
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatal("refused commits changed etcd")
	}
	// Retrying a commit that was applied (its response lost) is recognised, not fenced.
	if _, err := l.Commit(ctx, segment(40, 10, 0)); err != nil {
		t.Fatalf("replay of the last applied commit: %v", err)
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatal("a replayed commit changed etcd")
	}
}

func TestAcquireReplacesOwnStaleLease(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 1)
	s := mustSession(t, c, "a", 0)
	old, err := s.Acquire(ctxT(t), "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	// A second activation on the same node (the first never released) gets a new epoch
	// and fences the first.
	fresh, err := s.Acquire(ctxT(t), "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Epoch() <= old.Epoch() {
		t.Fatalf("epoch %d after %d", fresh.Epoch(), old.Epoch())
	}
	if _, err := old.Commit(ctxT(t), segment(0, 1, old.Epoch())); !errors.Is(err, coordination.ErrFenced) {
		t.Fatalf("old activation commit: %v, want ErrFenced", err)
	}
}

// TestReleaseStrayTouchesOnlyItsOwnLeaseOfThatEpoch: a stray release by another session,
// or for another epoch, leaves the lease; the holder's, for its epoch, frees it.
func TestReleaseStrayTouchesOnlyItsOwnLeaseOfThatEpoch(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 1)
	a, b := mustSession(t, c, "a", 0), mustSession(t, c, "b", 0)
	l, err := a.Acquire(ctxT(t), "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	p := coordination.Partition{Topic: "t", Partition: 0}
	held := func() bool {
		resp, err := c.Etcd().Get(ctxT(t), c.Keys().Lease("t", 0))
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Kvs) == 1
	}
	if err := b.ReleaseStray(ctxT(t), p, l.Epoch()); err != nil || !held() {
		t.Fatalf("another session's release: %v, held %v", err, held())
	}
	if err := a.ReleaseStray(ctxT(t), p, l.Epoch()+1); err != nil || !held() {
		t.Fatalf("release of another epoch: %v, held %v", err, held())
	}
	if err := a.ReleaseStray(ctxT(t), p, l.Epoch()); err != nil || held() {
		t.Fatalf("the holder's release: %v, held %v", err, held())
	}
}

// TestAcquireWaitingEndsWithItsSession: an Acquire waiting for another node's lease
// returns ErrSessionDone as soon as its own session ends, rather than wait on for a
// lease it could no longer take.
func TestAcquireWaitingEndsWithItsSession(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 1)
	if _, err := mustSession(t, c, "holder", 0).Acquire(ctxT(t), "t", 0); err != nil {
		t.Fatal(err)
	}
	s := mustSession(t, c, "waiter", 0)
	watchers := func() float64 {
		return harness.MetricSum(harness.Metrics(t, strings.TrimPrefix(etcd.Endpoint, "http://")), "etcd_debugging_mvcc_watcher_total ")
	}
	before := watchers()
	done := make(chan error, 1)
	go func() { _, err := s.Acquire(ctxT(t), "t", 0); done <- err }()
	harness.Eventually(t, 10*time.Second, func() error { // waiting: watching the holder's lease
		if w := watchers(); w <= before {
			return fmt.Errorf("%v watchers in etcd, %v before the acquire", w, before)
		}
		return nil
	})
	if _, err := c.Etcd().Revoke(ctxT(t), s.LeaseID()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, coordination.ErrSessionDone) {
			t.Fatalf("acquire whose session ended: %v, want ErrSessionDone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("acquire still waiting 10s after its session ended")
	}
}

func TestSessionEndReleasesEverything(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 3)
	s := mustSession(t, c, "a", 0)
	for p := range int32(3) {
		if _, err := s.Acquire(ctxT(t), "t", p); err != nil {
			t.Fatal(err)
		}
	}
	if n := countPrefix(t, c, c.Keys().Leases()); n != 3 {
		t.Fatalf("%d leases held, want 3", n)
	}
	if _, err := c.Etcd().Revoke(ctxT(t), s.LeaseID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after the session lease was revoked")
	}
	if n := countPrefix(t, c, c.Keys().Leases()); n != 0 {
		t.Fatalf("%d leases survive the session", n)
	}
	if n := countPrefix(t, c, c.Keys().Nodes()); n != 0 {
		t.Fatalf("the node key survives the session")
	}
	if _, err := s.Acquire(ctxT(t), "t", 0); !errors.Is(err, coordination.ErrSessionDone) {
		t.Fatalf("acquire on an ended session: %v, want ErrSessionDone", err)
	}
}

func TestAcquireBadInput(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 2)
	s := mustSession(t, c, "a", 0)
	before := dump(t, c)
	for _, tc := range []struct {
		topic     string
		partition int32
		want      error
	}{
		{"t", 2, coordination.ErrPartitionNotFound},
		{"t", -1, coordination.ErrPartitionNotFound},
		{"nope", 0, coordination.ErrTopicNotFound},
		{"bad/name", 0, coordination.ErrInvalidArgument},
		{"", 0, coordination.ErrInvalidArgument},
	} {
		if _, err := s.Acquire(ctxT(t), tc.topic, tc.partition); !errors.Is(err, tc.want) {
			t.Errorf("acquire %q/%d: %v, want %v", tc.topic, tc.partition, err, tc.want)
		}
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatal("refused acquires changed etcd")
	}
	for _, node := range []string{"", "a/b", "has space", strings.Repeat("n", 129)} {
		if _, err := c.NewSession(ctxT(t), coordination.NodeInfo{Node: node}, 0); !errors.Is(err, coordination.ErrInvalidArgument) {
			t.Errorf("session for node %q: %v, want ErrInvalidArgument", node, err)
		}
	}
}

func countPrefix(t testing.TB, c *coordination.Client, prefix string) int {
	t.Helper()
	n := 0
	for k := range dump(t, c) {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

// TestCommitGoesAroundAStuckMember: one member of a 3-member etcd stops answering (a
// SIGSTOP: its connections stay open, nothing comes back). A commit that the client sends
// to it gives up that attempt after a second and retries on another member, instead of
// waiting out the caller's deadline.
func TestCommitGoesAroundAStuckMember(t *testing.T) {
	cl, err := harness.StartEtcdCluster(context.Background(), t.TempDir(), 3, harness.EtcdOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, m := range cl.Members {
			_ = m.Process.Signal(syscall.SIGCONT)
		}
		if err := cl.Stop(); err != nil {
			t.Error(err)
		}
	})
	e, err := clientv3.New(clientv3.Config{Endpoints: cl.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	c := clientOn(t, e, "/stuck")
	mustTopic(t, c, "t", 1)
	// A session that outlives the test, whichever member its keep-alives go to.
	s := mustSession(t, c, "a", time.Minute)
	ctx := ctxT(t)
	l := mustAcquire(t, s, "t", 0)
	if err := cl.Members[0].Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The client sends requests to the members in turn: among 12 commits some go to
	// the stuck one.
	for i := range int64(12) {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		start := time.Now()
		_, err := l.Commit(cctx, segment(i*10, 10, l.Epoch()))
		cancel()
		if err != nil {
			t.Fatalf("commit %d with a stuck member: %v", i, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("commit %d took %v: it waited for the stuck member", i, took)
		}
	}
	if err := cl.Members[0].Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The member coming back may start an election: a read meanwhile can meet "leader
	// changed", which its caller retries.
	harness.Eventually(t, 30*time.Second, func() error {
		segs, hwm, err := c.Segments(ctx, "t", 0, 0, 0)
		if err != nil {
			return err
		}
		if hwm != 120 || len(segs) != 12 {
			t.Fatalf("index after the commits: %d segments, hwm %d", len(segs), hwm)
		}
		return nil
	})
}

// TestNodeNameOfALiveAgentIsRefused: a second agent started under the name of one that
// runs must not take its node key over (and delete it when it stops); an agent that
// restarts after dying gets its name back once its old session expires.
func TestNodeNameOfALiveAgentIsRefused(t *testing.T) {
	c := newClient(t)
	first := mustSession(t, c, "twin", time.Second)
	ctx := ctxT(t)
	start := time.Now()
	if s, err := c.NewSession(ctx, coordination.NodeInfo{Node: "twin", Addr: "127.0.0.1:2"}, time.Second); !errors.Is(err, coordination.ErrNodeInUse) {
		if s != nil {
			_ = s.Close(ctx)
		}
		t.Fatalf("a second session under a live agent's name: %v, want ErrNodeInUse", err)
	}
	t.Logf("refused after %v", time.Since(start).Round(time.Millisecond))
	resp, err := c.Etcd().Get(ctx, c.Keys().Node("twin"))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != first.LeaseID() {
		t.Fatalf("the live agent's node key after the refusal: %v", resp.Kvs)
	}

	first.Crash()
	second, err := c.NewSession(ctx, coordination.NodeInfo{Node: "twin", Addr: "127.0.0.1:2"}, time.Second)
	if err != nil {
		t.Fatalf("a session under the name of an agent that died: %v", err)
	}
	defer second.Close(ctx)
	if resp, err = c.Etcd().Get(ctx, c.Keys().Node("twin")); err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != second.LeaseID() {
		t.Fatalf("the node key after the restart: %v, %v", resp.Kvs, err)
	}
}

// TestNodeNameOfADeadAgentIsTakenBackAfterAnEtcdRestart: a restarted etcd gives every
// lease its whole TTL again, so the lease of an agent that died seems renewed once; the
// agent restarting under its name waits it out instead of taking it for a live twin. A
// node key written by hand, which no lease keeps, is taken.
func TestNodeNameOfADeadAgentIsTakenBackAfterAnEtcdRestart(t *testing.T) {
	e := harness.EtcdForTest(t, harness.EtcdOptions{})
	c := clientOn(t, etcdClient(t, e.Endpoint), "/streamhouse")
	ctx := ctxT(t)
	dead, err := c.NewSession(ctx, coordination.NodeInfo{Node: "phoenix"}, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	dead.Crash()
	if err := e.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := c.NewSession(ctx, coordination.NodeInfo{Node: "phoenix"}, 3*time.Second)
	if err != nil {
		t.Fatalf("a session under the name of an agent that died before etcd restarted: %v", err)
	}
	defer s.Close(ctx)

	if _, err := c.Etcd().Put(ctx, c.Keys().Node("by-hand"), "{}"); err != nil {
		t.Fatal(err)
	}
	h, err := c.NewSession(ctx, coordination.NodeInfo{Node: "by-hand"}, 3*time.Second)
	if err != nil {
		t.Fatalf("a session under a name whose key was written by hand: %v", err)
	}
	defer h.Close(ctx)
	if resp, err := c.Etcd().Get(ctx, c.Keys().Node("by-hand")); err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != h.LeaseID() {
		t.Fatalf("the node key written by hand after the session took it: %v, %v", resp.Kvs, err)
	}
}
