package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// load produces to every partition of a topic continuously, one producer per partition,
// retrying a failed request with the same records, and records every ack.
type load struct {
	tc     *testCluster
	topic  string
	mu     sync.Mutex
	acked  map[coordination.Partition]map[int64]string // offset -> value
	okAt   map[coordination.Partition][]time.Time       // times of successful produces
	failed map[coordination.Partition]int               // requests that failed after the client's retries
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startLoad(tc *testCluster, topic string, partitions int32) *load {
	l := &load{tc: tc, topic: topic, acked: map[coordination.Partition]map[int64]string{},
		okAt: map[coordination.Partition][]time.Time{}, failed: map[coordination.Partition]int{}, stop: make(chan struct{})}
	for i := range partitions {
		p := coordination.Partition{Topic: topic, Partition: i}
		l.acked[p] = map[int64]string{}
		l.wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				recs := make([]*partitionpb.Record, 10)
				for j := range recs {
					recs[j] = &partitionpb.Record{Value: fmt.Appendf(nil, "%s-%d-%d", p, n, j)}
				}
				resp, err := tc.client.Client().Produce(context.Background(), p, recs)
				now := time.Now()
				l.mu.Lock()
				if err == nil && resp.Code == partitionpb.Code_CODE_OK {
					for j, r := range recs {
						off := resp.BaseOffset + int64(j)
						if prev, dup := l.acked[p][off]; dup {
							tc.t.Errorf("%s offset %d acked twice: %q and %q", p, off, prev, r.Value)
						}
						l.acked[p][off] = string(r.Value)
					}
					l.okAt[p] = append(l.okAt[p], now)
				} else {
					l.failed[p]++
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// firstOKAfter returns when a produce to p first succeeded after t0.
func (l *load) firstOKAfter(p coordination.Partition, t0 time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, at := range l.okAt[p] {
		if at.After(t0) {
			return at, true
		}
	}
	return time.Time{}, false
}

// maxGap is the longest time between two successful produces to p around t0.
func (l *load) maxGap(p coordination.Partition) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var gap time.Duration
	for i := 1; i < len(l.okAt[p]); i++ {
		gap = max(gap, l.okAt[p][i].Sub(l.okAt[p][i-1]))
	}
	return gap
}

func (l *load) halt() { close(l.stop); l.wg.Wait() }

// verify reads every partition back and checks that each acked offset holds its value.
func (l *load) verify() int {
	t := l.tc.t
	total := 0
	for p, acked := range l.acked {
		got := l.tc.readAll(p)
		for off, v := range acked {
			if off >= int64(len(got)) || string(got[off].Value) != v {
				t.Fatalf("%s: acked record %q at offset %d is lost (log has %d records)", p, v, off, len(got))
			}
		}
		total += len(acked)
	}
	return total
}

func victimOf(t *testing.T, tc *testCluster, owners map[coordination.Partition]coordination.Owner) (*harness.Agent, []coordination.Partition) {
	t.Helper()
	for _, a := range tc.agents {
		var moved []coordination.Partition
		for p, o := range owners {
			if o.Node == a.Config.Node {
				moved = append(moved, p)
			}
		}
		if len(moved) > 0 {
			return a, moved
		}
	}
	t.Fatal("no agent owns a partition")
	return nil, nil
}

func TestKillAgentUnderLoadLosesNoAckedRecord(t *testing.T) {
	tc := newCluster(t, 3, 0)
	topics := map[string]int32{"orders": 6}
	tc.topic("orders", 6)
	before := tc.waitOwned(60*time.Second, topics)
	victim, moved := victimOf(t, tc, before)

	l := startLoad(tc, "orders", 6)
	harness.Eventually(t, 20*time.Second, func() error {
		for _, p := range moved {
			if _, ok := l.firstOKAfter(p, time.Time{}); !ok {
				return fmt.Errorf("no produce to %s yet", p)
			}
		}
		return nil
	})
	killed := time.Now()
	if err := victim.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var failover []time.Duration
	harness.Eventually(t, 60*time.Second, func() error {
		failover = failover[:0]
		for _, p := range moved {
			at, ok := l.firstOKAfter(p, killed)
			if !ok {
				return fmt.Errorf("no successful produce to %s since the kill", p)
			}
			failover = append(failover, at.Sub(killed))
		}
		return nil
	})
	l.halt()
	after := tc.waitOwned(30*time.Second, topics)
	for _, p := range moved {
		if after[p].Node == victim.Config.Node || after[p].Epoch <= before[p].Epoch {
			t.Fatalf("%s: owner %s epoch %d after the kill (was %s epoch %d)", p, after[p].Node, after[p].Epoch, before[p].Node, before[p].Epoch)
		}
	}
	n := l.verify()
	slices.Sort(failover)
	t.Logf("kill -9 of %s (%d partitions): first successful produce on a moved partition after %v (median %v); %d acked records all readable",
		victim.Config.Node, len(moved), failover[0].Round(time.Millisecond), failover[len(failover)/2].Round(time.Millisecond), n)
}

func TestGracefulStopHandsOverWithoutFailures(t *testing.T) {
	tc := newCluster(t, 3, 0)
	topics := map[string]int32{"orders": 6}
	tc.topic("orders", 6)
	before := tc.waitOwned(60*time.Second, topics)
	victim, moved := victimOf(t, tc, before)
	l := startLoad(tc, "orders", 6)
	harness.Eventually(t, 20*time.Second, func() error {
		for _, p := range moved {
			if _, ok := l.firstOKAfter(p, time.Time{}); !ok {
				return fmt.Errorf("no produce to %s yet", p)
			}
		}
		return nil
	})
	stopped := time.Now()
	if err := victim.Process.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, func() error {
		for _, p := range moved {
			if _, ok := l.firstOKAfter(p, stopped.Add(time.Second)); !ok {
				return fmt.Errorf("no successful produce to %s since the stop", p)
			}
		}
		return nil
	})
	l.halt()
	var pause time.Duration
	for _, p := range moved {
		pause = max(pause, l.maxGap(p))
		if l.failed[p] > 0 {
			t.Errorf("%s: %d produce requests failed after retries during a graceful handover", p, l.failed[p])
		}
	}
	after := tc.waitOwned(30*time.Second, topics)
	for _, p := range moved {
		if after[p].Node == victim.Config.Node || after[p].Epoch <= before[p].Epoch {
			t.Fatalf("%s: owner %s epoch %d after the stop", p, after[p].Node, after[p].Epoch)
		}
	}
	n := l.verify()
	t.Logf("SIGTERM of %s (%d partitions): longest pause a producer saw %v; %d acked records all readable",
		victim.Config.Node, len(moved), pause.Round(time.Millisecond), n)
}

var _ = syscall.SIGSTOP
