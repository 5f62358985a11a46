package actors

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// panicOnFirst makes the partitions panic on the first message each of matches matches,
// until the test ends (as a bug would); it counts the messages each matched.
func panicOnFirst(t *testing.T, matches ...func(msg any) bool) []*atomic.Int32 {
	seen := make([]*atomic.Int32, len(matches))
	for i := range seen {
		seen[i] = &atomic.Int32{}
	}
	hook := func(msg any) {
		for i, match := range matches {
			if match(msg) && seen[i].Add(1) == 1 {
				panic(fmt.Sprintf("injected at %T", msg))
			}
		}
	}
	testReceiveHook.Store(&hook)
	t.Cleanup(func() { testReceiveHook.Store(nil) })
	return seen
}

func isFetch(msg any) bool    { _, ok := msg.(*partitionpb.FetchRequest); return ok }
func isStopping(msg any) bool { _, ok := msg.(*actor.Stopping); return ok }

// TestPartitionThatPanicsIsStopped: a partition actor whose Receive panics is stopped,
// and so flushes and answers what it holds and gives its budget back; the next request
// activates it anew. Restarted (protoactor's default), its new instance would start a
// writer of its own while the old one kept the records it held, unanswered, and their
// budget, for good.
func TestPartitionThatPanicsIsStopped(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// A linger far longer than the test: the record waits in the open batch until the
	// partition is flushed.
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "t", Partitions: 1, LingerMs: coordination.MaxLinger.Milliseconds()}); err != nil {
		t.Fatal(err)
	}
	node := startNodes(t, f, 1)[0]
	p := coordination.Partition{Topic: "t"}
	acked := make(chan error, 1)
	go func() {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		resp, err := node.Client().Produce(pctx, p, []*partitionpb.Record{{Value: []byte("held")}})
		if err == nil && resp.Code != partitionpb.Code_CODE_OK {
			err = fmt.Errorf("answered %v", resp)
		}
		acked <- err
	}()
	harness.Eventually(t, 10*time.Second, func() error {
		if node.pending.used.Load() == 0 {
			return errors.New("the record is not in the partition's batch yet")
		}
		return nil
	})
	fetches := panicOnFirst(t, isFetch)[0]
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	go func() { _, _ = node.Client().Fetch(fctx, &partitionpb.FetchRequest{Topic: "t"}) }()
	select {
	case err := <-acked:
		if err != nil {
			t.Fatalf("the record the partition held when it panicked: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the record the partition held when it panicked is still unanswered")
	}
	if fetches.Load() < 1 {
		t.Fatal("the partition never panicked")
	}
	harness.Eventually(t, 10*time.Second, func() error {
		if used := node.pending.used.Load(); used != 0 {
			return fmt.Errorf("%d bytes of the pending budget still held", used)
		}
		return nil
	})
	resp, err := node.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "t"})
	if err != nil || resp.Code != partitionpb.Code_CODE_OK || len(resp.Records) != 1 || string(resp.Records[0].Value) != "held" {
		t.Fatalf("fetch from the partition's next activation: %v %v", resp, err)
	}
}

// TestPartitionThatPanicsWhileStoppingStillStops: a panic in the partition's Stopping
// (its state broken by the panic that stopped it) is logged and the actor stops all the
// same: passed on, it would have left the actor half-stopped for good, its mailbox
// suspended and its placement naming it, and every request to the partition unanswered.
func TestPartitionThatPanicsWhileStoppingStillStops(t *testing.T) {
	_, node, p := oneRecord(t)
	stops := panicOnFirst(t, isFetch, isStopping)[1]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The first fetch panics the partition; its attempts after that reach the next
	// activation.
	resp, err := node.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: p.Topic})
	if err != nil || resp.Code != partitionpb.Code_CODE_OK || len(resp.Records) != 1 || string(resp.Records[0].Value) != "first" {
		t.Fatalf("fetch after the partition panicked, and again while stopping: %v %v", resp, err)
	}
	if stops.Load() < 1 {
		t.Fatal("the partition never stopped")
	}
}

// TestRequestAnActivationDroppedIsSentAgainAtItsEnd: a request the partition's activation
// never answered (it panicked on it here; a partition stopping for a move drops what its
// mailbox still holds the same way) is sent again as soon as the activation's end is
// broadcast, not after the attempt timeout.
func TestRequestAnActivationDroppedIsSentAgainAtItsEnd(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	const attempt = 30 * time.Second
	node := startNodesWith(t, f, 1, func(c *NodeConfig) { c.Client = ClientOptions{AttemptTimeout: attempt, RetryFor: 2 * attempt} })[0]
	p := coordination.Partition{Topic: "t"}
	mustProduce(t, node, p, &partitionpb.Record{Value: []byte("first")})
	fetches := panicOnFirst(t, isFetch)[0]
	start := time.Now()
	resp, err := node.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "t"})
	if err != nil || resp.Code != partitionpb.Code_CODE_OK || len(resp.Records) != 1 {
		t.Fatalf("fetch: %v %v", resp, err)
	}
	if took := time.Since(start); took > attempt/3 {
		t.Fatalf("the fetch the activation dropped was answered after %v: sent again only at the attempt timeout (%v)", took, attempt)
	}
	if fetches.Load() < 2 {
		t.Fatalf("%d fetches reached the partition", fetches.Load())
	}
}

// TestAnEndedActivationsAddressIsForgottenEverywhere: protoactor drops an ended
// activation's cached address only on the agent that hosted it. Another agent that had
// sent to it forgets it too when it hears of the end, before its re-send goes, so that
// the re-send is not lost to a dead letter first.
func TestAnEndedActivationsAddressIsForgottenEverywhere(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	nodes := startNodesWith(t, f, 2, func(*NodeConfig) {})
	p := coordination.Partition{Topic: "t"}
	mustProduce(t, nodes[0], p, &partitionpb.Record{Value: []byte("first")}) // activates it
	requester := nodes[0]
	if requester.Owner(p) == requester.current().cluster.ActorSystem.Address() {
		requester = nodes[1]
	}
	c := requester.current().cluster
	mustProduce(t, requester, p, &partitionpb.Record{Value: []byte("second")})
	old, ok := c.PidCache.Get(Identity(p), PartitionKind)
	if !ok {
		t.Fatal("the requester has no address of the partition cached")
	}
	cachedAtEnd := make(chan bool, 1)
	sub := c.ActorSystem.EventStream.Subscribe(func(evt any) {
		if e, ok := evt.(*cluster.ActivationTerminated); ok && e.ClusterIdentity.GetIdentity() == Identity(p) {
			pid, ok := c.PidCache.Get(Identity(p), PartitionKind)
			select {
			case cachedAtEnd <- ok && pid.Equal(old):
			default:
			}
		}
	})
	defer c.ActorSystem.EventStream.Unsubscribe(sub)
	panicOnFirst(t, isFetch)
	if resp, err := requester.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "t", MaxBytes: 1 << 20}); err != nil || resp.Code != partitionpb.Code_CODE_OK || len(resp.Records) != 2 {
		t.Fatalf("fetch: %v %v", resp, err)
	}
	select {
	case cached := <-cachedAtEnd:
		if cached {
			t.Fatalf("the requester still had the ended activation's address %v when it heard of the end", old)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the requester did not hear of the activation's end")
	}
}
