package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
)

func TestThreeAgentsOwnEveryPartitionAndKeepEveryRecord(t *testing.T) {
	tc := newCluster(t, 3, 0)
	topics := map[string]int32{"orders": 6, "users": 3}
	for name, n := range topics {
		tc.topic(name, n)
	}
	owners := tc.waitOwned(60*time.Second, topics)
	perNode, perZone := map[string]int{}, map[string]int{}
	for _, o := range owners {
		perNode[o.Node]++
		perZone[o.Zone]++
	}
	t.Logf("partitions per agent %v, per zone %v", perNode, perZone)
	// waitOwned checked that each partition sits where Placement puts it; bounded-load
	// placement gives each of 3 agents 2 of the 6 and 1 of the 3 partitions.
	if len(perNode) != 3 || perNode["agent-1"] != 3 || perNode["agent-2"] != 3 || perNode["agent-3"] != 3 {
		t.Fatalf("partitions are not spread evenly across the three agents: %v", perNode)
	}

	// 50k keyed records from 8 concurrent producers, in batches of 100.
	const producers, perProducer, batch = 8, 6250, 100
	type acked struct {
		p      coordination.Partition
		offset int64
		value  string
	}
	var mu sync.Mutex
	var acks []acked
	var wg sync.WaitGroup
	start := time.Now()
	for g := range producers {
		wg.Go(func() {
			byPart := map[coordination.Partition][]*partitionpb.Record{}
			flush := func(p coordination.Partition) {
				recs := byPart[p]
				delete(byPart, p)
				resp, err := tc.client.Client().Produce(context.Background(), p, recs)
				if err != nil || resp.Code != partitionpb.Code_CODE_OK || int(resp.Count) != len(recs) {
					t.Errorf("produce %d records to %s: %v %v", len(recs), p, resp, err)
					return
				}
				mu.Lock()
				for i, r := range recs {
					acks = append(acks, acked{p, resp.BaseOffset + int64(i), string(r.Value)})
				}
				mu.Unlock()
			}
			for i := range perProducer {
				key := fmt.Sprintf("customer-%d-%d", g, i%997)
				topic := []string{"orders", "users"}[i%2]
				p := coordination.Partition{Topic: topic, Partition: partitionOf(key, topics[topic])}
				byPart[p] = append(byPart[p], &partitionpb.Record{Key: []byte(key), Value: fmt.Appendf(nil, "g%d-i%d", g, i)})
				if len(byPart[p]) == batch {
					flush(p)
				}
			}
			for p := range byPart {
				flush(p)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d records acked in %s", len(acks), time.Since(start).Round(time.Millisecond))
	if len(acks) != producers*perProducer {
		t.Fatalf("%d acks for %d records", len(acks), producers*perProducer)
	}
	// Reading back returns exactly the acked records, in offset order, no gap, no duplicate.
	want := map[coordination.Partition][]string{}
	sort.Slice(acks, func(i, j int) bool { return acks[i].offset < acks[j].offset })
	for _, a := range acks {
		want[a.p] = append(want[a.p], a.value)
		if int64(len(want[a.p])-1) != a.offset {
			t.Fatalf("%s: acked offset %d is not the next offset %d", a.p, a.offset, len(want[a.p])-1)
		}
	}
	for p, values := range want {
		got := tc.readAll(p)
		gotValues := make([]string, len(got))
		for i, r := range got {
			gotValues[i] = string(r.Value)
		}
		if !slices.Equal(gotValues, values) {
			t.Fatalf("%s: read %d records, acked %d, or they differ", p, len(got), len(values))
		}
	}
}
