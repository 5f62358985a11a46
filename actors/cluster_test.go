package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// startNodes starts n agents in this process on one etcd root and one bucket.
func startNodes(t *testing.T, f *fixture, n int) []*Node {
	t.Helper()
	return startNodesWith(t, f, n, func(*NodeConfig) {})
}

// startNodesWith is startNodes with each node's config changed by tune.
func startNodesWith(t *testing.T, f *fixture, n int, tune func(*NodeConfig)) []*Node {
	t.Helper()
	m := f.c.NewMirror()
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Watch(ctx) }()
	var nodes []*Node
	for i := range n {
		cfg := NodeConfig{
			Info: coordination.NodeInfo{Node: fmt.Sprintf("agent-%d", i+1), Zone: fmt.Sprintf("zone-%c", 'a'+i%3)},
			Log:  zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		}
		tune(&cfg)
		node, err := StartNode(context.Background(), f.c, f.store, m, cfg)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
	}
	t.Cleanup(func() {
		for _, node := range nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := node.Stop(ctx); err != nil {
				t.Errorf("stop %s: %v", node.cfg.Info.Node, err)
			}
			cancel()
		}
		cancel()
		<-done
	})
	return nodes
}

func TestClusterOwnsEveryPartitionOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, spec := range []coordination.TopicSpec{{Name: "orders", Partitions: 6}, {Name: "users", Partitions: 3}} {
		if _, err := f.c.CreateTopic(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	nodes := startNodes(t, f, 3)
	m := f.c.NewMirror()
	harness.Eventually(t, 30*time.Second, func() error {
		if err := m.Load(ctx); err != nil {
			return err
		}
		owners := m.Owners()
		if len(owners) != 9 {
			return fmt.Errorf("%d of 9 partitions owned", len(owners))
		}
		return nil
	})
	// Every lease is held by the partition's rendezvous owner, as each node computes it.
	perNode := map[string]int{}
	harness.Eventually(t, 30*time.Second, func() error {
		if err := m.Load(ctx); err != nil {
			return err
		}
		clear(perNode)
		for _, o := range m.Owners() {
			perNode[o.Node]++
			found := false
			for _, n := range nodes {
				if n.cfg.Info.Node == o.Node {
					found = n.current().reb.owned()[o.Partition]
				}
			}
			if !found {
				return fmt.Errorf("%s is held by %s, which is not its rendezvous owner", o.Partition, o.Node)
			}
		}
		return nil
	})
	t.Logf("partitions per node: %v", perNode)
	if len(perNode) < 2 {
		t.Fatalf("all partitions on one node: %v", perNode)
	}

	// Produce to every partition through one agent, then read everything back through
	// another.
	var wg sync.WaitGroup
	errs := make(chan error, 9)
	for _, p := range []string{"orders", "users"} {
		parts := int32(6)
		if p == "users" {
			parts = 3
		}
		for i := range parts {
			wg.Go(func() {
				part := coordination.Partition{Topic: p, Partition: i}
				for r := range 20 {
					recs := []*partitionpb.Record{{Value: fmt.Appendf(nil, "%s-%d", part, r)}}
					resp, err := nodes[0].Client().Produce(ctx, part, recs)
					if err != nil || resp.Code != partitionpb.Code_CODE_OK || resp.BaseOffset != int64(r) {
						errs <- fmt.Errorf("produce %s #%d: %v %v", part, r, resp, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	resp, err := nodes[2].Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "orders", Partition: 4, Offset: 5, MaxBytes: 1 << 20})
	if err != nil || resp.Code != partitionpb.Code_CODE_OK || len(resp.Records) != 15 || string(resp.Records[0].Value) != "orders/4-5" || resp.HighWaterMark != 20 {
		t.Fatalf("fetch: %v, %v", resp, err)
	}
	if _, err := nodes[1].Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "orders", Partition: 4, Offset: 21}); err != nil {
		t.Fatal(err)
	}
	resp, _ = nodes[1].Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "orders", Partition: 4, Offset: 21})
	if resp.Code != partitionpb.Code_CODE_OUT_OF_RANGE {
		t.Fatalf("fetch past the hwm: %v", resp)
	}
}

// topicOn starts n agents and creates topic t of the given partitions.
func topicOn(t *testing.T, partitions int32, n int) (*fixture, []*Node) {
	t.Helper()
	f := newFixture(t)
	if _, err := f.c.CreateTopic(context.Background(), coordination.TopicSpec{Name: "t", Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	return f, startNodes(t, f, n)
}

// mustProduce produces recs to p through node, failing the test unless they are acked.
func mustProduce(t *testing.T, node *Node, p coordination.Partition, recs ...*partitionpb.Record) {
	t.Helper()
	if resp, err := node.Client().Produce(context.Background(), p, recs); err != nil || resp.Code != partitionpb.Code_CODE_OK {
		t.Fatalf("produce to %s: %v %v", p, resp, err)
	}
}

// oneRecord starts an agent with topic t of one partition holding one record, "first".
func oneRecord(t *testing.T) (*fixture, *Node, coordination.Partition) {
	t.Helper()
	f, nodes := topicOn(t, 1, 1)
	p := coordination.Partition{Topic: "t", Partition: 0}
	mustProduce(t, nodes[0], p, &partitionpb.Record{Value: []byte("first")})
	return f, nodes[0], p
}

func TestFetchLongPollsAtTheLogEnd(t *testing.T) {
	_, node, p := oneRecord(t)
	ctx := context.Background()
	// A fetch at the log end with a short wait comes back empty after the wait.
	t0 := time.Now()
	resp, err := node.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "t", Offset: 1, MaxWaitMs: 200})
	if err != nil || resp.Code != partitionpb.Code_CODE_OK || len(resp.Records) != 0 || resp.HighWaterMark != 1 || time.Since(t0) < 150*time.Millisecond {
		t.Fatalf("empty long-poll: %v %v after %s", resp, err, time.Since(t0))
	}
	// A waiting fetch is answered as soon as a record is committed, long before its wait.
	parked := testutil.ToFloat64(metricFetchWaiting)
	got := make(chan *partitionpb.FetchResponse, 1)
	go func() {
		r, _ := node.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "t", Offset: 1, MaxWaitMs: 20000})
		got <- r
	}()
	// The record is produced once the fetch is parked at the log end, so that the answer
	// is the commit's waking it and not a fetch that came after the commit.
	harness.Eventually(t, 10*time.Second, func() error {
		if testutil.ToFloat64(metricFetchWaiting) <= parked {
			return fmt.Errorf("the fetch is not parked at the log end")
		}
		return nil
	})
	produced := time.Now()
	if resp, err := node.Client().Produce(ctx, p, []*partitionpb.Record{{Value: []byte("second")}}); err != nil || resp.Code != partitionpb.Code_CODE_OK {
		t.Fatalf("produce: %v %v", resp, err)
	}
	select {
	case r := <-got:
		if r == nil || len(r.Records) != 1 || string(r.Records[0].Value) != "second" || r.Records[0].Offset != 1 {
			t.Fatalf("long-poll answer %v", r)
		}
		t.Logf("long-poll answered %s after the produce", time.Since(produced).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("a fetch waiting at the log end was not answered after a commit")
	}
}

// TestExpiredLongPollsLeaveNothingParked: a long-poll that waits out its time at an idle
// partition's log end is answered and forgotten. Before, it stayed in the partition's
// list until the next commit, and an idle partition's consumers, polling every second,
// grew it without bound.
func TestExpiredLongPollsLeaveNothingParked(t *testing.T) {
	_, node, _ := oneRecord(t)
	ctx := context.Background()
	before := testutil.ToFloat64(metricFetchWaiting)
	const polls = 30
	for range polls {
		resp, err := node.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "t", Offset: 1, MaxWaitMs: 10})
		if err != nil || resp.Code != partitionpb.Code_CODE_OK || len(resp.Records) != 0 {
			t.Fatalf("long-poll at the end of an idle partition: %v %v", resp, err)
		}
	}
	harness.Eventually(t, 5*time.Second, func() error {
		if parked := testutil.ToFloat64(metricFetchWaiting) - before; parked != 0 {
			return fmt.Errorf("%v fetches still parked after %d long-polls that all expired", parked, polls)
		}
		return nil
	})
}

// TestSessionLossStopsThePartitions: an agent whose session ends (its etcd lease revoked,
// as after a pause past its TTL) rejoins, and the partition actors of its lost incarnation
// stop (its identity lookup sees the member gone and stops what it placed): fenced, they
// would otherwise run on, their long-polls unanswered, until each one's next commit. Its
// watch of the members ends too.
func TestSessionLossStopsThePartitions(t *testing.T) {
	f, nodes := topicOn(t, 3, 1)
	ctx, node := context.Background(), nodes[0]
	for i := range int32(3) {
		mustProduce(t, node, coordination.Partition{Topic: "t", Partition: i}, &partitionpb.Record{Value: []byte("before")})
	}
	lost := node.current()
	if n := len(lost.local.snapshot()); n != 3 {
		t.Fatalf("%d partitions active, want 3", n)
	}
	if _, err := f.c.Etcd().Revoke(ctx, node.Session().LeaseID()); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	harness.Eventually(t, 30*time.Second, func() error {
		if n := len(lost.local.snapshot()); n != 0 {
			return fmt.Errorf("%d partitions of the lost session still active", n)
		}
		return nil
	})
	t.Logf("the lost session's partitions stopped %s after it ended", time.Since(revoked).Round(time.Millisecond))
	p := coordination.Partition{Topic: "t", Partition: 0}
	harness.Eventually(t, 30*time.Second, func() error {
		resp, err := node.Client().Produce(ctx, p, []*partitionpb.Record{{Value: []byte("after")}})
		if err != nil || resp.Code != partitionpb.Code_CODE_OK {
			return fmt.Errorf("produce after the rejoin: %v %v", resp, err)
		}
		return nil
	})
	// The lost membership's watch of the members has ended: it followed them for as long
	// as the agent ran, one more for each session lost.
	select {
	case <-lost.provider.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the lost membership still watches the members")
	}
}

// TestOwnStrayLeaseIsActivated leaves a lease held by the owner's own session with no
// activation behind it (what a Release that failed leaves, or an Acquire applied whose
// answer was lost): the owner activates the partition again on its own, a new epoch
// replacing the lease. Before, the rebalancer took the lease for an activation and left
// the partition without one (no merges, no retention) until a client happened to call it.
func TestOwnStrayLeaseIsActivated(t *testing.T) {
	f, node, p := oneRecord(t)
	ctx := context.Background()
	e, key := f.c.Etcd(), f.c.Keys().Lease(p.Topic, p.Partition)
	pid := node.current().local.snapshot()[p]
	// The active partition's lease is replaced by another of its own session's (so that
	// the partition's release, fenced on its epoch, leaves it), then the partition stops.
	held, err := e.Get(ctx, key)
	if err != nil || len(held.Kvs) != 1 || pid == nil {
		t.Fatalf("lease %v (%v), activation %v", held, err, pid)
	}
	if _, err := e.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	stray, err := e.Put(ctx, key, string(held.Kvs[0].Value), clientv3.WithLease(clientv3.LeaseID(held.Kvs[0].Lease)))
	if err != nil {
		t.Fatal(err)
	}
	node.current().system.Root.Poison(pid)
	m := f.c.NewMirror()
	harness.Eventually(t, 30*time.Second, func() error {
		if now := node.current().local.snapshot()[p]; now == nil || now.Equal(pid) {
			return fmt.Errorf("%s: activation %v, want a new one", p, now)
		}
		if err := m.Load(ctx); err != nil {
			return err
		}
		if o, ok := m.Owner(p); !ok || o.Epoch <= stray.Header.Revision {
			return fmt.Errorf("%s held at epoch %d, want a new one past the stray lease's %d", p, o.Epoch, stray.Header.Revision)
		}
		return nil
	})
}

// TestLargeRequestsCrossAgents: a produce request and a fetch answer of several MiB (up
// to --max-batch-bytes and --max-fetch-bytes, 16 MiB) go between agents when the client's
// agent does not own the partition. Before, the remotes kept gRPC's 4 MiB limit: the
// request went unanswered, and so did every request between the two agents after it.
func TestLargeRequestsCrossAgents(t *testing.T) {
	_, nodes := topicOn(t, 4, 2)
	ctx := context.Background()
	recs := make([]*partitionpb.Record, 60) // 6 MB
	for i := range recs {
		recs[i] = &partitionpb.Record{Value: bytes.Repeat([]byte{byte('a' + i%26)}, 100_000)}
	}
	crossed := 0
	for p := range int32(4) {
		part := coordination.Partition{Topic: "t", Partition: p}
		for _, n := range nodes {
			if n.Address() == n.Owner(part) {
				continue // from the agent that does not own it
			}
			crossed++
			mustProduce(t, n, part, recs...) // 6 MB, from the agent that does not own it
			resp, err := n.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "t", Partition: p, MaxBytes: 16 << 20})
			if err != nil || resp.Code != partitionpb.Code_CODE_OK || len(resp.Records) != len(recs) {
				t.Fatalf("fetch of 6 MB of %s from another agent: %d records, %v %v", part, len(resp.GetRecords()), resp.GetCode(), err)
			}
		}
	}
	if crossed == 0 {
		t.Fatal("every partition on one agent: nothing crossed")
	}
}

// TestStrayLeaseIsReleased plants a lease held by one node's session with no activation
// behind it, for a partition another node owns (what an Acquire leaves whose answer was
// lost after etcd applied it): the holder's rebalancer releases it, and the owner takes
// the partition and serves it.
func TestStrayLeaseIsReleased(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	nodes := startNodes(t, f, 3)
	p := coordination.Partition{Topic: "strays", Partition: 0}
	harness.Eventually(t, 30*time.Second, func() error {
		if nodes[0].Owner(p) == "" {
			return fmt.Errorf("placement not known yet")
		}
		return nil
	})
	owner := nodes[0].Owner(p)
	var holder, ownerNode *Node
	for _, n := range nodes {
		if n.Address() == owner {
			ownerNode = n
		} else if holder == nil {
			holder = n
		}
	}
	// The lease is planted before the topic exists, so that no rebalancer races it.
	s := holder.current().session
	val, _ := json.Marshal(coordination.LeaseValue{NodeInfo: s.Node(), AcquiredAt: time.Now()})
	if _, err := f.c.Etcd().Put(ctx, f.c.Keys().Lease(p.Topic, p.Partition), string(val), clientv3.WithLease(s.LeaseID())); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: p.Topic, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	m := f.c.NewMirror()
	harness.Eventually(t, 30*time.Second, func() error {
		if err := m.Load(ctx); err != nil {
			return err
		}
		o, ok := m.Owner(p)
		if !ok || o.Node != ownerNode.cfg.Info.Node {
			return fmt.Errorf("%s held by %+v, want %s", p, o.NodeInfo, ownerNode.cfg.Info.Node)
		}
		return nil
	})
	resp, err := holder.Client().Produce(ctx, p, []*partitionpb.Record{{Value: []byte("after the stray")}})
	if err != nil || resp.Code != partitionpb.Code_CODE_OK || resp.Node != ownerNode.cfg.Info.Node {
		t.Fatalf("produce after the stray lease: %v %v", resp, err)
	}
}

// TestLongPollOutlastsTheRetryBudget: a fetch waiting at the log end longer than the
// client's retry budget is a long-poll, not a partition that does not answer.
func TestLongPollOutlastsTheRetryBudget(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	nodes := startNodesWith(t, f, 1, func(c *NodeConfig) {
		c.Client = ClientOptions{AttemptTimeout: 300 * time.Millisecond, RetryFor: 500 * time.Millisecond}
	})
	p := coordination.Partition{Topic: "t", Partition: 0}
	harness.Eventually(t, 30*time.Second, func() error {
		resp, err := nodes[0].Client().Produce(ctx, p, []*partitionpb.Record{{Value: []byte("first")}})
		if err == nil && resp.Code != partitionpb.Code_CODE_OK {
			err = fmt.Errorf("%v: %s", resp.Code, resp.Message)
		}
		return err
	})
	t0 := time.Now()
	resp, err := nodes[0].Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "t", Offset: 1, MaxWaitMs: 1500})
	if err != nil || resp.Code != partitionpb.Code_CODE_OK || len(resp.Records) != 0 || time.Since(t0) < 1400*time.Millisecond {
		t.Fatalf("a 1.5 s long-poll with a 0.5 s retry budget: %v, %v after %s", resp, err, time.Since(t0))
	}
}

// TestStaleOwnerDoesNotSayOutOfRange: an owner asked for an offset past its log that etcd
// has committed (another owner wrote there while this one's agent was paused, and it has
// not heard it lost its lease) answers unavailable, which its callers retry, not out of
// range, which makes a Kafka consumer reset its offset.
func TestStaleOwnerDoesNotSayOutOfRange(t *testing.T) {
	_, node, p := oneRecord(t)
	ctx := context.Background()
	// Past this owner's log, and past etcd's: out of range.
	resp, err := node.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: p.Topic, Offset: 5})
	if err != nil || resp.Code != partitionpb.Code_CODE_OUT_OF_RANGE {
		t.Fatalf("a fetch past the log: %v %v", resp, err)
	}
	// Another owner's commits, as etcd would hold them: the high-water mark at 10.
	e := node.client.Etcd()
	if _, err := e.Put(ctx, node.client.Keys().HWM(p.Topic, p.Partition), "10"); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		if h := node.mirror.HWM(p); h != 10 {
			return fmt.Errorf("the mirror has the high-water mark at %d", h)
		}
		return nil
	})
	fctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err = node.Client().Fetch(fctx, &partitionpb.FetchRequest{Topic: p.Topic, Offset: 5})
	if err != nil || resp.Code != partitionpb.Code_CODE_UNAVAILABLE {
		t.Fatalf("a fetch of an offset etcd has committed, from an owner behind it: %v %v", resp, err)
	}
}
