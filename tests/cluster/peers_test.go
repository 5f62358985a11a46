package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// An agent the others cannot reach for longer than the cluster library's gossip
// heartbeat expiry (20 s), while every agent keeps its etcd session, is served again
// once the network heals: its partitions through the other agents, theirs through it.
// Membership is the agents' etcd sessions; before, the library's gossip also blocked a
// member whose heartbeats stopped coming, and a blocked member stays blocked for as long
// as its process lives: the agents stayed split, each alive, for good.
func TestAnAgentTheOthersCannotReachIsServedAgainOnceHealed(t *testing.T) {
	tc := newCluster(t, 0, 0)
	var peers *harness.Proxy
	cut := tc.addAgentWith("agent-1", "zone-a", 0, func(cfg *harness.AgentConfig) {
		var err error
		if peers, err = harness.BehindProxy(cfg); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = peers.Close() })
	})
	tc.addAgent("agent-2", "zone-b", 0)
	const partitions = 6
	tc.topic("split", partitions)
	owners := tc.waitOwned(30*time.Second, map[string]int32{"split": partitions})
	held := 0
	for _, o := range owners {
		if o.Node == cut.Config.Node {
			held++
		}
	}
	if held == 0 || held == partitions {
		t.Fatalf("%s holds %d of %d partitions: the test needs some on each agent", cut.Config.Node, held, partitions)
	}
	// serves says whether every partition takes a record through produce (the
	// test's client-only member, or the cut agent's gateway).
	serves := func(produce func(p coordination.Partition) error) error {
		for i := range int32(partitions) {
			if err := produce(coordination.Partition{Topic: "split", Partition: i}); err != nil {
				return err
			}
		}
		return nil
	}
	viaClient := func(p coordination.Partition) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := tc.client.Client().Produce(ctx, p, []*partitionpb.Record{{Value: []byte("v")}})
		if err != nil || resp.Code != partitionpb.Code_CODE_OK {
			return fmt.Errorf("produce to %s (held by %s): %v %v", p, owners[p].Node, resp, err)
		}
		return nil
	}
	gw, _ := dial(t, cut.GRPCAddr)
	viaCut := func(p coordination.Partition) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := gw.Produce(ctx, &pb.ProduceRequest{Topic: p.Topic, Partition: &p.Partition, Records: []*pb.Record{{Value: []byte("v")}}}); err != nil {
			return fmt.Errorf("produce to %s (held by %s) through %s: %w", p, owners[p].Node, cut.Config.Node, err)
		}
		return nil
	}
	if err := serves(viaClient); err != nil {
		t.Fatal(err)
	}
	if err := serves(viaCut); err != nil {
		t.Fatal(err)
	}

	peers.Cut()
	cutAt := time.Now()
	if err := serves(viaClient); err == nil {
		t.Fatalf("every partition, %s's too, took a record with %s cut off", cut.Config.Node, cut.Config.Node)
	}
	time.Sleep(25*time.Second - time.Since(cutAt)) // the fault's length: past the 20 s heartbeat expiry
	peers.Heal()
	harness.Eventually(t, 30*time.Second, func() error { return serves(viaClient) })
	harness.Eventually(t, 30*time.Second, func() error { return serves(viaCut) })

	// The next change of membership counts every agent: each places the partitions over
	// the same members, and every partition is held and served.
	tc.addAgent("agent-3", "zone-c", 0)
	owners = tc.waitOwned(60*time.Second, map[string]int32{"split": partitions})
	harness.Eventually(t, 30*time.Second, func() error { return serves(viaClient) })
	harness.Eventually(t, 30*time.Second, func() error { return serves(viaCut) })
}
