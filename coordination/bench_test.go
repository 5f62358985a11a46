package coordination_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// BenchmarkCommit measures the fenced segment-commit transaction against a real etcd with
// fsync on (a dedicated server, not the tests' no-fsync one): latency percentiles of one
// partition committing back to back, and commits/s of 1 and of 16 partitions committing
// concurrently (etcd batches concurrent transactions into one fsync).
func BenchmarkCommit(b *testing.B) {
	e := harness.EtcdForTest(b, harness.EtcdOptions{Fsync: true})
	c := clientOn(b, etcdClient(b, e.Endpoint), "/bench")
	mustTopic(b, c, "bench", 16)
	s := mustSession(b, c, "bench", 0)
	for _, partitions := range []int{1, 16} {
		b.Run(fmt.Sprintf("partitions=%d", partitions), func(b *testing.B) {
			leases := make([]*coordination.Lease, partitions)
			next := make([]int64, partitions)
			for p := range leases {
				l, err := s.Acquire(ctxT(b), "bench", int32(p))
				if err != nil {
					b.Fatal(err)
				}
				leases[p] = l
				if next[p], err = l.HWM(ctxT(b)); err != nil {
					b.Fatal(err)
				}
			}
			var mu sync.Mutex
			var lat []time.Duration
			start := time.Now()
			commits := 0
			for b.Loop() {
				var wg sync.WaitGroup
				for p, l := range leases {
					wg.Go(func() {
						m := coordination.SegmentMeta{Object: objectKey("bench", int32(p), next[p], l.Epoch()),
							Base: next[p], Last: next[p] + 999, Records: 1000, Bytes: 1 << 20, ZBytes: 300 << 10}
						t0 := time.Now()
						if _, err := l.Commit(ctxT(b), m); err != nil {
							b.Error(err)
							return
						}
						d := time.Since(t0)
						mu.Lock()
						lat = append(lat, d)
						mu.Unlock()
						next[p] += 1000
					})
				}
				wg.Wait()
				commits += partitions
			}
			elapsed := time.Since(start)
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(commits)/elapsed.Seconds(), "commits/s")
			b.ReportMetric(0, "ns/op")
			for _, l := range leases {
				_ = l.Release(ctxT(b))
			}
		})
	}
}

// BenchmarkSegmentsAt measures a history read's index lookup (Client.Segments, 64
// segments from an offset) in a partition whose index holds many segments of 100
// records and, near its end, a merged one of 10M, followed by 9 more: from that
// segment's base (a consumer going on from where it was), from inside it near its base
// (found in the first window below the offset), and from deep inside it (windows
// widened back to the log start, then halved). Its index is written directly, as the
// owner's commits and merges would leave it.
func BenchmarkSegmentsAt(b *testing.B) {
	for _, keys := range []int{1000, 20000} {
		b.Run(fmt.Sprintf("segments=%d", keys), func(b *testing.B) {
			c := newClient(b)
			mustTopic(b, c, "t", 1)
			sizes := append(slices.Repeat([]int64{100}, keys-10), 10_000_000)
			metas := writeIndex(b, c, "t", 0, 0, append(sizes, slices.Repeat([]int64{100}, 9)...))
			big := metas[keys-10].Base
			for _, at := range []struct {
				name string
				from int64
			}{{"base", big}, {"inside", big + 50}, {"deep", big + 9_000_000}} {
				b.Run(at.name, func(b *testing.B) {
					for b.Loop() {
						segs, _, err := c.Segments(ctxT(b), "t", 0, at.from, 64)
						if err != nil || len(segs) != 10 || segs[0].Base != big {
							b.Fatalf("segments from %d: %d, %v", at.from, len(segs), err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkObjectIndex measures the orphan sweeper's read of the whole segment index
// (Client.ObjectIndex) in a cluster of 100 partitions of 1000 segments each.
func BenchmarkObjectIndex(b *testing.B) {
	c := newClient(b)
	mustTopic(b, c, "t", 100)
	for p := range int32(100) {
		writeIndex(b, c, "t", p, 0, slices.Repeat([]int64{100}, 1000))
	}
	for b.Loop() {
		x, err := c.ObjectIndex(ctxT(b))
		if err != nil || len(x.Indexed) != 100_000 {
			b.Fatalf("object index: %v", err)
		}
	}
}
