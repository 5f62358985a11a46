package coordination_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// watched loads a mirror and watches it until the test ends.
func watched(t *testing.T, c *coordination.Client) *coordination.Mirror {
	t.Helper()
	m := c.NewMirror()
	if err := m.Load(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	startWatch(t, m)
	return m
}

// observedMirror is a watched mirror and a count of its observers' runs.
func observedMirror(t *testing.T, c *coordination.Client) (*coordination.Mirror, *atomic.Int64) {
	t.Helper()
	m := watched(t, c)
	var observed atomic.Int64
	m.Observe(func() { observed.Add(1) })
	return m, &observed
}

func startWatch(t *testing.T, m *coordination.Mirror) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Watch(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func lastRevision(t testing.TB, c *coordination.Client) int64 {
	t.Helper()
	resp, err := c.Etcd().Get(ctxT(t), "/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// snapshot is what a mirror shows, for comparing two mirrors.
func snapshot(m *coordination.Mirror) map[string]any {
	hwms := map[string]int64{}
	for _, o := range m.Owners() {
		hwms[o.Partition.String()] = m.HWM(o.Partition)
	}
	return map[string]any{"topics": m.Topics(), "owners": m.Owners(), "hwms": hwms, "nodes": m.Nodes()}
}

func TestMirrorFollowsChanges(t *testing.T) {
	c := newClient(t)
	m, observed := observedMirror(t, c)
	ctx := ctxT(t)

	mustTopic(t, c, "orders", 2)
	s := mustSession(t, c, "agent-1", 0)
	l, err := s.Acquire(ctx, "orders", 1)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := l.Commit(ctx, segment(0, 42, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitForRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	p := coordination.Partition{Topic: "orders", Partition: 1}
	if ts := m.Topics(); len(ts) != 1 || ts[0].Name != "orders" || ts[0].Partitions != 2 {
		t.Fatalf("topics %+v", ts)
	}
	o, ok := m.Owner(p)
	if !ok || o.Node != "agent-1" || o.Zone != "zone-a" || o.Epoch != l.Epoch() {
		t.Fatalf("owner %+v, %v; want agent-1 at epoch %d", o, ok, l.Epoch())
	}
	if h := m.HWM(p); h != 42 {
		t.Fatalf("hwm %d, want 42", h)
	}
	if n := m.Nodes(); len(n) != 1 || n[0].Node != "agent-1" {
		t.Fatalf("nodes %+v", n)
	}
	if observed.Load() == 0 {
		t.Fatal("observer never called")
	}

	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTopic(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitForRevision(ctx, lastRevision(t, c)); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Owner(p); ok {
		t.Fatal("released lease still mirrored")
	}
	if len(m.Topics()) != 0 {
		t.Fatal("deleted topic still mirrored")
	}
}

func TestWaitForRevisionOfUnmirroredWrite(t *testing.T) {
	c := newClient(t)
	m := watched(t, c)
	// A write outside the mirrored prefixes produces no event for the mirror; a progress
	// notification must still move it past that revision, promptly (etcd's own periodic
	// notification comes only every 10 minutes).
	resp, err := c.Etcd().Put(ctxT(t), c.Keys().Root()+"elsewhere", "x")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctxT(t), 5*time.Second)
	defer cancel()
	if err := m.WaitForRevision(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	t.Logf("mirror reached an unmirrored revision after %s", time.Since(start).Round(time.Millisecond))
}

// TestMirrorIsNotSentUnmirroredWrites: the writes that agents make most, segment commits
// and offset commits, do not travel to every agent's mirror: it watches its prefixes, not
// their root. Its observers (the rebalancer) run on mirrored changes only.
func TestMirrorIsNotSentUnmirroredWrites(t *testing.T) {
	c := newClient(t)
	m, observed := observedMirror(t, c)
	ctx := ctxT(t)
	k := c.Keys()
	for i := range 100 {
		for _, key := range []string{k.Segment("t", 0, int64(i)), k.Root() + coordination.GroupsPrefix + "g/t/0"} {
			if _, err := c.Etcd().Put(ctx, key, "x"); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustTopic(t, c, "t", 1)
	if err := m.WaitForRevision(ctx, lastRevision(t, c)); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Topic("t"); !ok {
		t.Fatal("topic not mirrored")
	}
	// The topic, and progress notifications asked for while waiting: not 200 writes.
	if n := observed.Load(); n > 10 {
		t.Fatalf("observers ran %d times for 200 unmirrored writes and a topic", n)
	}
}

// TestMirrorProgressIsNotHeldByOtherWatches: a watch of the same client that starts past
// etcd's revision (as a lease's wait for its deletion does) keeps etcd from answering
// progress requests on its stream; the mirror's watches have a stream of their own, so
// the mirror still reaches a revision written outside its prefixes.
func TestMirrorProgressIsNotHeldByOtherWatches(t *testing.T) {
	c := newClient(t)
	m := watched(t, c)
	ctx := ctxT(t)
	resp, err := c.Etcd().Put(ctx, c.Keys().Root()+"elsewhere", "x")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	c.Etcd().Watch(wctx, c.Keys().Root()+"other", clientv3.WithRev(resp.Header.Revision+1))
	wait, cancelWait := context.WithTimeout(ctx, 5*time.Second)
	defer cancelWait()
	if err := m.WaitForRevision(wait, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
}

func TestMirrorReloadsAfterCompaction(t *testing.T) {
	e := harness.EtcdForTest(t, harness.EtcdOptions{})
	c := clientOn(t, etcdClient(t, e.Endpoint), "/streamhouse")
	ctx := ctxT(t)
	mustTopic(t, c, "keep", 1)
	mustTopic(t, c, "drop", 1)
	m := c.NewMirror()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	// While the mirror is not watching, the keyspace changes and etcd compacts the history
	// the mirror would need to replay.
	s := mustSession(t, c, "agent-1", 0)
	l, err := s.Acquire(ctx, "keep", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Commit(ctx, segment(0, 7, 0)); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTopic(ctx, "drop"); err != nil {
		t.Fatal(err)
	}
	mustTopic(t, c, "new", 4)
	head := lastRevision(t, c)
	if _, err := c.Etcd().Compact(ctx, head); err != nil {
		t.Fatal(err)
	}
	startWatch(t, m)
	if err := m.WaitForRevision(ctx, head); err != nil {
		t.Fatal(err)
	}
	fresh := c.NewMirror()
	if err := fresh.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := snapshot(m), snapshot(fresh); !reflect.DeepEqual(got, want) {
		t.Fatalf("mirror after compaction:\n%v\nfresh load:\n%v", got, want)
	}
	if m.HWM(coordination.Partition{Topic: "keep", Partition: 0}) != 7 {
		t.Fatal("hwm missed across the compaction")
	}
}

func TestMirrorResumesAfterEtcdRestart(t *testing.T) {
	e := harness.EtcdForTest(t, harness.EtcdOptions{})
	c := clientOn(t, etcdClient(t, e.Endpoint), "/streamhouse")
	ctx := ctxT(t)
	mustTopic(t, c, "before", 1)
	m := watched(t, c)
	if err := m.WaitForRevision(ctx, lastRevision(t, c)); err != nil {
		t.Fatal(err)
	}
	if err := e.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var after coordination.TopicSpec
	harness.Eventually(t, 20*time.Second, func() error {
		var err error
		after, err = c.CreateTopic(ctx, coordination.TopicSpec{Name: "after", Partitions: 2})
		return err
	})
	if err := m.WaitForRevision(ctx, lastRevision(t, c)); err != nil {
		t.Fatal(err)
	}
	if got, ok := m.Topic("after"); !ok || got.Partitions != after.Partitions {
		t.Fatalf("topic created after the restart: %+v, %v", got, ok)
	}
	if _, ok := m.Topic("before"); !ok {
		t.Fatal("topic from before the restart lost")
	}
}

// TestWaitForRevisionEndsWithItsContextWhileEtcdIsDown: a wait for a revision the mirror
// has not reached ends when its context does, also while the watch's stream is
// reconnecting to an etcd that is gone (asking that stream for progress waits for it).
func TestWaitForRevisionEndsWithItsContextWhileEtcdIsDown(t *testing.T) {
	e := harness.EtcdForTest(t, harness.EtcdOptions{})
	c := clientOn(t, etcdClient(t, e.Endpoint), "/streamhouse")
	m := watched(t, c)
	rev := lastRevision(t, c)
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	// The client has seen its connection go: the watch's stream is reconnecting.
	harness.Eventually(t, 5*time.Second, func() error {
		if st := c.Etcd().ActiveConnection().GetState(); st == connectivity.Ready {
			return fmt.Errorf("connection to the stopped etcd still %s", st)
		}
		return nil
	})
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		done := make(chan error, 1)
		go func() { done <- m.WaitForRevision(ctx, rev+1) }()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("wait for a revision past etcd's with etcd down: %v, want its deadline", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a wait with a deadline of 1 s still waiting after 5 s")
		}
		cancel()
	}
}

// TestMirrorDropsEveryLeaseOfAnExpiredSession: etcd deletes all of a session's keys at
// one revision when its lease ends; the mirror drops every one of them.
func TestMirrorDropsEveryLeaseOfAnExpiredSession(t *testing.T) {
	c := newClient(t)
	m := watched(t, c)
	ctx := ctxT(t)
	mustTopic(t, c, "orders", 3)
	s := mustSession(t, c, "agent-1", 0)
	for i := range int32(3) {
		if _, err := s.Acquire(ctx, "orders", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.WaitForRevision(ctx, lastRevision(t, c)); err != nil {
		t.Fatal(err)
	}
	if n := len(m.Owners()); n != 3 {
		t.Fatalf("%d owners mirrored, want 3", n)
	}
	if _, err := c.Etcd().Revoke(ctx, s.LeaseID()); err != nil { // as its TTL running out would
		t.Fatal(err)
	}
	if err := m.WaitForRevision(ctx, lastRevision(t, c)); err != nil {
		t.Fatal(err)
	}
	if owners, nodes := m.Owners(), m.Nodes(); len(owners) != 0 || len(nodes) != 0 {
		t.Fatalf("after the session's lease ended, the mirror still has owners %+v and nodes %+v", owners, nodes)
	}
}

// TestMirrorResumesBeforeEventsAProgressNotificationCameAhead: a watch heard of revision
// R from a progress notification before its events up to R came (etcd answered a
// progress request for the watches it knew; the client gave the answer to every watch),
// and failed then. The resumed watch must still send those events: a topic created at R
// is mirrored.
func TestMirrorResumesBeforeEventsAProgressNotificationCameAhead(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t)
	m := c.NewMirror()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	mustTopic(t, c, "early", 3)
	m.ApplyProgress(lastRevision(t, c))
	startWatch(t, m)
	mustTopic(t, c, "later", 1) // once the mirror reflects it, the watch has run past "early"
	if err := m.WaitForRevision(ctx, lastRevision(t, c)); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Topic("later"); !ok {
		t.Fatal("topic created after the watch started is not mirrored")
	}
	if got, ok := m.Topic("early"); !ok || got.Partitions != 3 {
		t.Fatalf("topic created before a progress notification of its revision: %+v, %v; want 3 partitions", got, ok)
	}
}

// mirrored returns a client, a mirror of its cluster and a session, and a func that
// waits until the mirror has every change made so far.
func mirrored(t *testing.T) (*coordination.Client, *coordination.Mirror, *coordination.Session, func()) {
	c := newClient(t)
	m := watched(t, c)
	return c, m, mustSession(t, c, "a", 0), func() {
		t.Helper()
		if err := m.WaitForRevision(ctxT(t), lastRevision(t, c)); err != nil {
			t.Fatal(err)
		}
	}
}

// StoppedDeletedTopics tells when a deleted topic can be purged: none of its partitions
// has an owner left. A live topic, owned or not, or a deleted one still owned, cannot.
func TestMirrorTellsADeletedTopicsPartitionsStopped(t *testing.T) {
	c, m, s, caughtUp := mirrored(t)
	ctx := ctxT(t)
	says := func(want bool) {
		t.Helper()
		caughtUp()
		got := m.StoppedDeletedTopics()
		if (len(got) == 1 && got[0].Name == "d" && got[0].Incarnation > 0) != want || len(got) > 1 {
			t.Fatalf("StoppedDeletedTopics %+v, want d: %v", got, want)
		}
	}
	mustTopic(t, c, "d", 2)
	mustTopic(t, c, "live", 1)
	mustTopic(t, c, "unowned", 1) // a live topic no partition of which has an owner
	l := mustAcquire(t, s, "d", 1)
	mustAcquire(t, s, "live", 0) // a live topic's owner does not count
	says(false)
	if err := c.DeleteTopic(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	says(false) // its partition 1 still has an owner
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	says(true)
	if err := c.PurgeTopic(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	says(false)
}

// A placement observer runs after a change of the topics, leases or nodes, not after
// every commit (a high-water mark's change): a rebalance pass, which looks at every
// partition of every topic, ran after each commit of the cluster.
func TestPlacementObserversDoNotRunOnCommits(t *testing.T) {
	c := newClient(t)
	m, all := observedMirror(t, c)
	var placement atomic.Int64
	m.ObservePlacement(func() { placement.Add(1) })
	ctx := ctxT(t)
	mustTopic(t, c, "placed", 1)
	s := mustSession(t, c, "agent-1", 0)
	l, err := s.Acquire(ctx, "placed", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitForRevision(ctx, lastRevision(t, c)); err != nil {
		t.Fatal(err)
	}
	before, allBefore := placement.Load(), all.Load()
	if before == 0 {
		t.Fatal("a topic created and a lease taken, and no placement observer ran")
	}
	for i := range int64(5) {
		rev, err := l.Commit(ctx, segment(i*10, 10, 0))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.WaitForRevision(ctx, rev); err != nil {
			t.Fatal(err)
		}
	}
	if got := placement.Load(); got != before {
		t.Fatalf("placement observers ran %d times for 5 commits", got-before)
	}
	if all.Load() == allBefore {
		t.Fatal("the observers of every change did not run for 5 commits")
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		if placement.Load() == before {
			return fmt.Errorf("a lease released, and no placement observer ran")
		}
		return nil
	})
}
