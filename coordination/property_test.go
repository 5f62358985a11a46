package coordination_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/coordination"
)

// TestRandomWritersNeverOverlapOrGap runs writers that contend for two partitions while a
// chaos goroutine "pauses" them (revokes their sessions, as an expiry during a GC pause or
// SIGSTOP would) and they carry on writing with what they believed. Whatever the
// interleaving, the committed log of each partition must tile [0, hwm) exactly: no two
// segments share an offset, no gap, and every acked commit is there and nothing else.
func TestRandomWritersNeverOverlapOrGap(t *testing.T) {
	const writers, partitions = 5, 2
	c := newClient(t)
	mustTopic(t, c, "t", partitions)
	ctx, cancel := context.WithTimeout(ctxT(t), 4*time.Second)
	defer cancel()

	var mu sync.Mutex
	acked := map[string]coordination.SegmentMeta{} // segment key -> meta acked to its writer
	// A commit cut short by the end of the run has an unknown outcome, as a producer whose
	// request times out does: it may or may not be in the log, but it was never acked.
	unknown := map[string]coordination.SegmentMeta{}
	sessions := map[int]*coordination.Session{}
	fenced := 0

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for ctx.Err() == nil {
				s, err := c.NewSession(ctx, coordination.NodeInfo{Node: fmt.Sprintf("w%d", w)}, time.Second)
				if err != nil {
					continue
				}
				mu.Lock()
				sessions[w] = s
				mu.Unlock()
				runWriter(ctx, t, c, s, rng, partitions, func(key string, m coordination.SegmentMeta, ok bool) {
					mu.Lock()
					defer mu.Unlock()
					if !ok {
						unknown[key] = m
						return
					}
					if _, dup := acked[key]; dup {
						t.Errorf("segment %s acked twice", key)
					}
					acked[key] = m
				}, func() { mu.Lock(); fenced++; mu.Unlock() })
				_ = s.Close(context.Background())
			}
		})
	}
	// Chaos: pause (revoke) a random writer's session every few milliseconds.
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(7, 7))
		for ctx.Err() == nil {
			time.Sleep(time.Duration(5+rng.IntN(40)) * time.Millisecond)
			mu.Lock()
			s := sessions[rng.IntN(writers)]
			mu.Unlock()
			if s != nil {
				_, _ = c.Etcd().Revoke(context.Background(), s.LeaseID())
			}
		}
	})
	wg.Wait()

	total, unacked := 0, 0
	for p := range int32(partitions) {
		segs, hwm, err := c.Segments(ctxT(t), "t", p, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		next, epoch := int64(0), int64(0)
		for _, s := range segs {
			if s.Base != next {
				t.Fatalf("partition %d: segment [%d, %d] after offset %d: overlap or gap", p, s.Base, s.Last, next-1)
			}
			if s.Epoch < epoch {
				t.Fatalf("partition %d: epoch %d after epoch %d", p, s.Epoch, epoch)
			}
			key := c.Keys().Segment("t", p, s.Base)
			if u, ok := unknown[key]; ok && reflect.DeepEqual(u, s) {
				unacked++ // its commit was cut short by the deadline yet applied: legal
			} else if a, ok := acked[key]; !ok || !reflect.DeepEqual(a, s) {
				t.Fatalf("partition %d: committed segment %+v was never acked (acked: %+v)", p, s, a)
			}
			next, epoch = s.Last+1, s.Epoch
			total++
		}
		if next != hwm {
			t.Fatalf("partition %d: segments end at %d, hwm is %d", p, next, hwm)
		}
	}
	if total-unacked != len(acked) {
		t.Fatalf("%d segments committed (%d of them with an unknown outcome), %d acked", total, unacked, len(acked))
	}
	if total < 20 || fenced == 0 {
		t.Fatalf("the run proved little: %d segments, %d fenced commits", total, fenced)
	}
	t.Logf("%d segments committed by %d writers, %d stale commits fenced", total, writers, fenced)
}

// runWriter acquires random partitions and commits segments until fenced, the session
// ends, or ctx does. It keeps writing after its session is revoked, as a paused process
// that wakes up would.
func runWriter(ctx context.Context, t *testing.T, c *coordination.Client, s *coordination.Session, rng *rand.Rand,
	partitions int, ack func(key string, m coordination.SegmentMeta, ok bool), onFenced func()) {
	for ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		p := int32(rng.IntN(partitions))
		l, err := s.Acquire(actx, "t", p)
		cancel()
		if errors.Is(err, coordination.ErrSessionDone) {
			return
		}
		if err != nil {
			continue
		}
		next, err := l.HWM(ctx)
		if err != nil {
			continue
		}
		for range 1 + rng.IntN(10) {
			if rng.IntN(10) == 0 {
				time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond) // a pause
			}
			n := int64(1 + rng.IntN(20))
			m := coordination.SegmentMeta{Object: objectKey("t", p, next, l.Epoch()), Base: next, Last: next + n - 1, Records: n, Epoch: l.Epoch()}
			_, err := l.Commit(ctx, m)
			if errors.Is(err, coordination.ErrFenced) {
				onFenced()
				break
			}
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("commit: %v", err)
				}
				ack(c.Keys().Segment("t", p, m.Base), m, false)
				return
			}
			ack(c.Keys().Segment("t", p, m.Base), m, true)
			next = m.Last + 1
		}
		if rng.IntN(2) == 0 {
			_ = l.Release(ctx)
		}
	}
}
