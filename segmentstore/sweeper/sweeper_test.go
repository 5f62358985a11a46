package sweeper_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/segmentstore/sweeper"
	"github.com/streamhouse/streamhouse/tests/harness"
)

var etcd *harness.Etcd

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, harness.Services{Etcd: &etcd}))
}

// fixture is a cluster (its own etcd root) with one partition lease, over a file store
// whose objects' modification times the test sets.
type fixture struct {
	c     *coordination.Client
	lease *coordination.Lease
	store objstore.Store
	dir   string
	next  int64 // next offset to commit
	now   time.Time
}

var roots atomic.Int64

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	e, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	c, err := coordination.New(e, coordination.Options{Root: "/sweeper-test/" + time.Now().Format("150405.000") + "-" + string(rune('a'+roots.Add(1)))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTopic(ctx, coordination.TopicSpec{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	s, err := c.NewSession(ctx, coordination.NodeInfo{Node: "a"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	l, err := s.Acquire(ctx, "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	store, err := objstore.Open(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{c: c, lease: l, dir: dir, now: time.Now()}
	f.store = harness.StoreWithClock(store, func() time.Time { return f.now })
	return f
}

// sweeper returns a sweeper of the fixture's store, whose clock is the fixture's.
func (f *fixture) sweeper(t *testing.T, grace time.Duration) *sweeper.Sweeper {
	t.Helper()
	sw, err := sweeper.New(f.c, f.store, sweeper.Options{Grace: grace})
	if err != nil {
		t.Fatal(err)
	}
	return sw
}

// put writes an object modified age before the fixture's clock.
func (f *fixture) put(t *testing.T, key string, age time.Duration) {
	t.Helper()
	if err := f.store.Put(context.Background(), key, []byte("segment bytes of "+key)); err != nil {
		t.Fatal(err)
	}
	mod := f.now.Add(-age)
	if err := os.Chtimes(filepath.Join(f.dir, filepath.FromSlash(key)), mod, mod); err != nil {
		t.Fatal(err)
	}
}

// commit indexes a one-record segment in object key.
func (f *fixture) commit(t *testing.T, key string) {
	t.Helper()
	m := coordination.SegmentMeta{Object: key, Base: f.next, Last: f.next, Records: 1, Epoch: f.lease.Epoch()}
	if _, err := f.lease.Commit(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	f.next++
}

func (f *fixture) keys(t *testing.T) []string {
	t.Helper()
	infos, err := f.store.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range infos {
		keys = append(keys, o.Key)
	}
	sort.Strings(keys)
	return keys
}

func TestSweepDeletesOnlyOrphansPastTheirGrace(t *testing.T) {
	const grace = sweeper.MinGrace
	f := newFixture(t)
	sw := f.sweeper(t, grace)
	ctx := context.Background()
	f.put(t, "data/a/committed-old.obj", 3*grace) // indexed: never deleted, however old
	f.commit(t, "data/a/committed-old.obj")
	f.put(t, "data/a/shared.obj", 3*grace) // two segments of it indexed
	f.commit(t, "data/a/shared.obj")
	f.commit(t, "data/a/shared.obj")
	f.put(t, "data/a/fenced-old.obj", grace)                // an orphan just past its grace
	f.put(t, "data/b/fenced-recent.obj", grace-time.Second) // an upload whose commit may still come
	f.put(t, "keep/not-data.txt", 3*grace)                  // outside the data prefix: not the sweeper's

	pass, err := sw.Sweep(ctx)
	if err != nil || pass.Listed != 4 || pass.Indexed != 2 || pass.Pending != 1 || pass.Deleted != 1 || pass.Bytes == 0 {
		t.Fatalf("first sweep: %+v, %v", pass, err)
	}
	want := []string{"data/a/committed-old.obj", "data/a/shared.obj", "data/b/fenced-recent.obj", "keep/not-data.txt"}
	if got := f.keys(t); !slices.Equal(got, want) {
		t.Fatalf("objects after the sweep: %v, want %v", got, want)
	}
	// A second later the recent orphan is past its grace too. A new sweeper (another
	// agent, a restart) decides the same: the rule needs no memory.
	f.now = f.now.Add(time.Second)
	if pass, err := f.sweeper(t, grace).Sweep(ctx); err != nil || pass.Deleted != 1 || pass.Pending != 0 {
		t.Fatalf("last sweep: %+v, %v", pass, err)
	}
	want = []string{"data/a/committed-old.obj", "data/a/shared.obj", "keep/not-data.txt"}
	if got := f.keys(t); !slices.Equal(got, want) {
		t.Fatalf("objects after the last sweep: %v, want %v", got, want)
	}
	// Every committed segment still reads back.
	segs, _, err := f.c.Segments(ctx, "t", 0, 0, 0)
	if err != nil || len(segs) != 3 {
		t.Fatalf("index: %d segments, %v", len(segs), err)
	}
	for _, s := range segs {
		if _, err := f.store.Get(ctx, s.Object); err != nil {
			t.Fatalf("committed object %s: %v", s.Object, err)
		}
	}
}

// An object committed after an earlier sweep saw it unindexed (an upload whose commit
// was slow) is never deleted.
func TestSweepSparesAnObjectCommittedLate(t *testing.T) {
	const grace = sweeper.MinGrace
	f := newFixture(t)
	sw := f.sweeper(t, grace)
	ctx := context.Background()
	f.put(t, "data/a/slow.obj", grace/2)
	if pass, err := sw.Sweep(ctx); err != nil || pass.Pending != 1 {
		t.Fatalf("first sweep: %+v, %v", pass, err)
	}
	f.commit(t, "data/a/slow.obj")
	f.now = f.now.Add(2 * grace)
	if pass, err := sw.Sweep(ctx); err != nil || pass.Deleted != 0 || pass.Indexed != 1 {
		t.Fatalf("sweep after the commit: %+v, %v", pass, err)
	}
	if _, err := f.store.Get(ctx, "data/a/slow.obj"); err != nil {
		t.Fatal(err)
	}
}

func TestSweeperRefusesAShortGrace(t *testing.T) {
	f := newFixture(t)
	if _, err := sweeper.New(f.c, f.store, sweeper.Options{Grace: sweeper.MinGrace - time.Second}); !errors.Is(err, coordination.ErrInvalidArgument) {
		t.Fatalf("grace below the minimum: %v, want ErrInvalidArgument", err)
	}
}

// An old object taken out of the index (retention, a merge) stays a grace period from
// its removal, for readers that resolved it before; then it goes, and so does its
// tombstone.
func TestSweepWaitsTheGraceFromARemoval(t *testing.T) {
	const grace = sweeper.MinGrace
	f := newFixture(t)
	sw := f.sweeper(t, grace)
	ctx := context.Background()
	f.put(t, "data/a/expired.obj", 3*grace)
	f.commit(t, "data/a/expired.obj")
	f.put(t, "data/a/kept.obj", 3*grace)
	f.commit(t, "data/a/kept.obj")
	segs, rev, err := f.c.SegmentRange(ctx, "t", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.lease.Rewrite(ctx, segs[:1], rev, nil, &coordination.Tombstone{Objects: []string{"data/a/expired.obj"}, Reason: coordination.RemovedByRetention}); err != nil {
		t.Fatal(err)
	}
	if pass, err := sw.Sweep(ctx); err != nil || pass.Pending != 1 || pass.Deleted != 0 || pass.Tombstones != 0 {
		t.Fatalf("sweep right after the removal: %+v, %v", pass, err)
	}
	f.now = f.now.Add(grace + time.Second)
	if pass, err := sw.Sweep(ctx); err != nil || pass.Deleted != 1 || pass.Tombstones != 1 {
		t.Fatalf("sweep a grace after the removal: %+v, %v", pass, err)
	}
	if got, want := f.keys(t), []string{"data/a/kept.obj"}; !slices.Equal(got, want) {
		t.Fatalf("objects: %v, want %v", got, want)
	}
	if x, err := f.c.ObjectIndex(ctx); err != nil || len(x.Tombstones) != 0 {
		t.Fatalf("tombstones left: %+v, %v", x, err)
	}
}

// A deleted topic's keys are purged by the sweep once its partitions have stopped, and
// its objects deleted a grace later.
func TestSweepPurgesDeletedTopics(t *testing.T) {
	const grace = sweeper.MinGrace
	f := newFixture(t)
	sw := f.sweeper(t, grace)
	ctx := context.Background()
	f.put(t, "data/a/one.obj", 3*grace)
	f.commit(t, "data/a/one.obj")
	if err := f.c.DeleteTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	// The partition's owner has not stopped yet: nothing is purged.
	if pass, err := sw.Sweep(ctx); err != nil || len(pass.Purged) != 0 || pass.Indexed != 1 {
		t.Fatalf("sweep while the owner holds its lease: %+v, %v", pass, err)
	}
	if err := f.lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if pass, err := sw.Sweep(ctx); err != nil || !slices.Equal(pass.Purged, []string{"t"}) || pass.Pending != 1 {
		t.Fatalf("sweep after the owner stopped: %+v, %v", pass, err)
	}
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "t", Partitions: 1}); err != nil {
		t.Fatalf("the name is not free after the purge: %v", err)
	}
	f.now = f.now.Add(grace + time.Second)
	if pass, err := sw.Sweep(ctx); err != nil || pass.Deleted != 1 {
		t.Fatalf("sweep a grace after the purge: %+v, %v", pass, err)
	}
	if got := f.keys(t); len(got) != 0 {
		t.Fatalf("objects left: %v", got)
	}
}

// TestSweepJudgesAgesByTheStoresClock: the store's clock is an hour behind this agent's
// (or this agent's an hour ahead: a VM restored, no NTP yet). An upload the store dated
// a minute ago is a minute old, whose commit may still come, and is kept until the store
// says its grace has passed. Before, the sweeper took its own clock and deleted it at
// once: an upload then committed and acked named an object no longer there.
func TestSweepJudgesAgesByTheStoresClock(t *testing.T) {
	const grace = sweeper.MinGrace
	f := newFixture(t)
	f.now = time.Now().Add(-time.Hour)
	sw := f.sweeper(t, grace)
	ctx := context.Background()
	f.put(t, "data/a/uploading.obj", time.Minute)
	if pass, err := sw.Sweep(ctx); err != nil || pass.Deleted != 0 || pass.Pending != 1 {
		t.Fatalf("sweep a minute after the upload by the store's clock: %+v, %v", pass, err)
	}
	f.now = f.now.Add(grace)
	if pass, err := sw.Sweep(ctx); err != nil || pass.Deleted != 1 {
		t.Fatalf("sweep past the grace by the store's clock: %+v, %v", pass, err)
	}
}

// TestSweepGoesOnPastATopicItCannotPurge: a deleted topic whose index holds a value the
// purge cannot read (an operator's etcdctl put) is left, with an error naming it, and
// the other deleted topics are purged. Before, the first such topic ended every sweep of
// the cluster. Orphans are not deleted while a segment key cannot be read: the objects it
// names are unknown.
func TestSweepGoesOnPastATopicItCannotPurge(t *testing.T) {
	const grace = sweeper.MinGrace
	f := newFixture(t)
	sw := f.sweeper(t, grace)
	ctx := context.Background()
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "odd", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Etcd().Put(ctx, f.c.Keys().Segment("odd", 0, 0), "not a segment"); err != nil {
		t.Fatal(err)
	}
	if err := f.c.DeleteTopic(ctx, "odd"); err != nil {
		t.Fatal(err)
	}
	if err := f.lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.c.DeleteTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	f.put(t, "data/a/orphan.obj", grace)
	pass, err := sw.Sweep(ctx)
	if err == nil || !strings.Contains(err.Error(), "odd") {
		t.Fatalf("sweep with a topic it cannot purge: %v, want an error naming it", err)
	}
	if !slices.Equal(pass.Purged, []string{"t"}) {
		t.Fatalf("sweep past a topic it cannot purge: purged %v, want [t]", pass.Purged)
	}
	if got := f.keys(t); !slices.Equal(got, []string{"data/a/orphan.obj"}) || pass.Deleted != 0 {
		t.Fatalf("objects after a sweep that could not read a segment key: %v (%+v)", got, pass)
	}
}

// PurgeOnStop purges a deleted topic whose partitions have stopped at once, not at the
// next sweep; one it cannot purge (a segment key that does not decode) is tried once
// for the stop, and left to the sweeps: the mirror changes with every commit, and a try
// on each would write the sweeper lock to etcd several times a second, for good.
func TestPurgeOnStopPurgesOnceAStoppedTopic(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := f.c.NewMirror()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { _ = m.Watch(ctx) }()
	sw := f.sweeper(t, sweeper.MinGrace) // sweeps every 45 s: none in this test
	sess := f.lease.Session()
	go sw.Run(ctx, func() *coordination.Session { return sess })
	go sw.PurgeOnStop(ctx, m, 10*time.Millisecond)
	var locks atomic.Int32 // the sweeper lock's takings
	go func() {
		for resp := range f.c.Etcd().Watch(ctx, f.c.Keys().Lock(sweeper.LockName), clientv3.WithPrefix(), clientv3.WithFilterDelete()) {
			locks.Add(int32(len(resp.Events)))
		}
	}()
	for _, name := range []string{"gone", "stuck"} {
		if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.c.Etcd().Put(ctx, f.c.Keys().Segment("stuck", 0, 0), "not json"); err != nil {
		t.Fatal(err)
	}
	if err := f.c.DeleteTopic(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		_, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "gone", Partitions: 1})
		return err
	})
	if err := f.c.DeleteTopic(ctx, "stuck"); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		if n := locks.Load(); n < 2 {
			return fmt.Errorf("the lock was taken %d times, want one purge of each topic", n)
		}
		return nil
	})
	for i := range 100 { // the mirror sees 100 changes one by one, the stuck topic still there
		f.commit(t, fmt.Sprintf("data/x/%d.obj", i))
		resp, err := f.c.Etcd().Get(ctx, "/", clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if err := m.WaitForRevision(ctx, resp.Header.Revision); err != nil {
			t.Fatal(err)
		}
	}
	if n := locks.Load(); n != 2 {
		t.Fatalf("the lock was taken %d times, want 2: one purge of each stopped topic", n)
	}
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "stuck", Partitions: 1}); !errors.Is(err, coordination.ErrTopicExists) {
		t.Fatalf("create of the stuck topic's name: %v, want ErrTopicExists", err)
	}
}
