package kafka

import (
	"fmt"
	"testing"
)

// TestRendezvousSpreadsSimilarNames: groups and partitions whose names differ only in
// their last characters are spread over the agents. With FNV alone (before), all 50
// groups stray-0..stray-49 had agent-1 of agent-1 and agent-2 as their coordinator, and
// 10 of orders/0..11 agent-1 as their leader of last resort.
func TestRendezvousSpreadsSimilarNames(t *testing.T) {
	for _, n := range []int{2, 3, 5} {
		var brokers []broker
		for i := range n {
			brokers = append(brokers, broker{id: int32(i), node: fmt.Sprintf("agent-%d", i+1)})
		}
		for _, pattern := range []string{"group/stray-%d", "orders/%d", "group/%d"} {
			const keys = 600
			got := map[string]int{}
			for i := range keys {
				got[rendezvous(brokers, fmt.Sprintf(pattern, i)).node]++
			}
			// Even is keys/n each; a fair hash stays within 25% of it (about 4 standard
			// deviations for 5 agents).
			for _, b := range brokers {
				if c := got[b.node]; c < keys/n*3/4 || c > keys/n*5/4 {
					t.Errorf("%d agents, keys %q: %s has %d of %d: %v", n, pattern, b.node, c, keys, got)
				}
			}
		}
	}
}
