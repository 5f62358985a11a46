package actors

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func randomHosts(rng *rand.Rand, n int) []string {
	seen := map[string]bool{}
	var hosts []string
	for len(hosts) < n {
		h := fmt.Sprintf("127.0.0.1:%d", 32768+rng.IntN(28000))
		if !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	return hosts
}

func TestBalanceSpreadsEveryTopicEvenly(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for range 2000 {
		hosts := randomHosts(rng, 1+rng.IntN(5))
		for _, parts := range []int32{1, 3, 6, 9, 24} {
			load := map[string]int{}
			for _, h := range balance("t", parts, hosts) {
				load[h]++
			}
			limit := (int(parts) + len(hosts) - 1) / len(hosts)
			for _, h := range hosts {
				if load[h] > limit {
					t.Fatalf("%d partitions over %d hosts: %s has %d, cap %d", parts, len(hosts), h, load[h], limit)
				}
				if int(parts) >= len(hosts) && load[h] == 0 {
					t.Fatalf("%d partitions over %d hosts: %s has none", parts, len(hosts), h)
				}
			}
		}
	}
}

func TestBalanceMovesLittleWhenAHostJoins(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	const parts, trials = 24, 500
	total := 0
	for range trials {
		hosts := randomHosts(rng, 4)
		before, after := balance("events", parts, hosts[:3]), balance("events", parts, hosts)
		moved := 0
		for i := range int32(parts) {
			if before[i] != after[i] {
				moved++
			}
		}
		if moved < parts/4 || moved > parts/2 {
			t.Fatalf("a 4th host moved %d of %d partitions", moved, parts)
		}
		total += moved
	}
	t.Logf("a 4th host moves %.1f of %d partitions on average (1/N = %d)", float64(total)/trials, parts, parts/4)
}

func TestBalanceIsDeterministic(t *testing.T) {
	hosts := []string{"10.0.0.1:8090", "10.0.0.2:8090", "10.0.0.3:8090"}
	a, b := balance("orders", 6, hosts), balance("orders", 6, []string{hosts[2], hosts[0], hosts[1]})
	for i := range int32(6) {
		if a[i] != b[i] {
			t.Fatalf("partition %d: %s vs %s depending on host order", i, a[i], b[i])
		}
	}
}
