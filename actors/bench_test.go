package actors

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// benchAgent is one agent (in this process) on a dedicated etcd with fsync on and the
// package's MinIO: the set-up of "one agent with MinIO".
func benchAgent(b *testing.B, topic string, partitions int32) (*Node, *coordination.Client, objstore.Store) {
	b.Helper()
	e := harness.EtcdForTest(b, harness.EtcdOptions{Fsync: true})
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = etcd.Close() })
	c, err := coordination.New(etcd, coordination.Options{})
	if err != nil {
		b.Fatal(err)
	}
	store, err := objstore.OpenS3(context.Background(), objstore.S3Options{
		Bucket: fmt.Sprintf("bench-%d-%d", os.Getpid(), seq.Add(1)), Endpoint: testMinIO.Endpoint,
		AccessKey: testMinIO.AccessKey, SecretKey: testMinIO.SecretKey, CreateBucket: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.CreateTopic(context.Background(), coordination.TopicSpec{Name: topic, Partitions: partitions}); err != nil {
		b.Fatal(err)
	}
	m := c.NewMirror()
	if err := m.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Watch(ctx) }()
	node, err := StartNode(context.Background(), c, store, m, NodeConfig{Info: coordination.NodeInfo{Node: "bench"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = node.Stop(sctx)
		scancel()
		cancel()
		<-done
	})
	// Wait until every partition is active.
	harness.Eventually(b, 30*time.Second, func() error {
		if n := len(m.Owners()); n != int(partitions) {
			return fmt.Errorf("%d of %d partitions active", n, partitions)
		}
		return nil
	})
	return node, c, store
}

func kibRecords(n int, rng *rand.Rand) []*partitionpb.Record {
	recs := make([]*partitionpb.Record, n)
	for i := range recs {
		v := make([]byte, 1024)
		for j := range v {
			v[j] = "abcdefghijklmnopqrstuvwxyz{}:,\"0123456789"[rng.IntN(41)]
		}
		recs[i] = &partitionpb.Record{Key: fmt.Appendf(nil, "key-%d", rng.IntN(1000)), Value: v}
	}
	return recs
}

func percentile(d []time.Duration, q float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*q))]
}

// BenchmarkProduceThroughput drives one agent with 1 KiB records (batches of 100, 16
// concurrent producers over 4 partitions, acks after the durable commit) for 5s per
// iteration; run it with -benchtime 1x.
func BenchmarkProduceThroughput(b *testing.B) {
	node, _, _ := benchAgent(b, "bench", 4)
	const producers, batch = 16, 100
	for b.Loop() {
		var records, failures atomic.Int64
		deadline := time.Now().Add(5 * time.Second)
		start := time.Now()
		var wg sync.WaitGroup
		for g := range producers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 1))
				recs := kibRecords(batch, rng)
				p := coordination.Partition{Topic: "bench", Partition: int32(g % 4)}
				for time.Now().Before(deadline) {
					resp, err := node.Client().Produce(context.Background(), p, recs)
					if err != nil || resp.Code != partitionpb.Code_CODE_OK {
						failures.Add(1)
						continue
					}
					records.Add(int64(resp.Count))
				}
			})
		}
		wg.Wait()
		secs := time.Since(start).Seconds()
		b.ReportMetric(float64(records.Load())/secs, "records/s")
		b.ReportMetric(float64(records.Load())*1024/secs/(1<<20), "MiB/s")
		b.ReportMetric(float64(failures.Load()), "failed-requests")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkProduceLatency sends 1000 single-record requests per second (1 KiB, default
// linger 5ms) for 5s and reports request-to-ack percentiles, next to the floor measured in
// the same run: a MinIO PUT of the segment size the run produced, and the fenced etcd
// commit transaction. Run it with -benchtime 1x.
func BenchmarkProduceLatency(b *testing.B) {
	node, c, store := benchAgent(b, "bench", 4)
	for b.Loop() {
		var mu sync.Mutex
		var lat []time.Duration
		var failures atomic.Int64
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Millisecond)
		rng := rand.New(rand.NewPCG(1, 1))
		recs := kibRecords(64, rng)
		for i := range 5000 {
			<-tick.C
			wg.Go(func() {
				p := coordination.Partition{Topic: "bench", Partition: int32(i % 4)}
				t0 := time.Now()
				resp, err := node.Client().Produce(context.Background(), p, recs[i%64:i%64+1])
				d := time.Since(t0)
				if err != nil || resp.Code != partitionpb.Code_CODE_OK {
					failures.Add(1)
					return
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			})
		}
		tick.Stop()
		wg.Wait()

		// The floor, in the same run: PUTs of the mean segment size this run wrote, and
		// fenced commits on a partition of its own.
		segs, _, err := c.Segments(context.Background(), "bench", 0, 0, 0)
		if err != nil || len(segs) == 0 {
			b.Fatalf("segments: %v", err)
		}
		var zbytes int64
		for _, s := range segs {
			zbytes += s.ZBytes
		}
		obj := make([]byte, zbytes/int64(len(segs)))
		var puts, txns []time.Duration
		for i := range 200 {
			t0 := time.Now()
			if err := store.Put(context.Background(), fmt.Sprintf("floor/%d", i), obj); err != nil {
				b.Fatal(err)
			}
			puts = append(puts, time.Since(t0))
		}
		txns = commitFloor(b, c, 200)
		p99 := percentile(lat, 0.99)
		floor := 5*time.Millisecond + percentile(puts, 0.99) + percentile(txns, 0.99)
		b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(percentile(puts, 0.99).Microseconds())/1000, "put-p99-ms")
		b.ReportMetric(float64(percentile(txns, 0.99).Microseconds())/1000, "txn-p99-ms")
		b.ReportMetric(float64(p99)/float64(floor), "p99/floor")
		b.ReportMetric(float64(len(obj)), "segment-bytes")
		b.ReportMetric(float64(failures.Load()), "failed-requests")
	}
	b.ReportMetric(0, "ns/op")
}

// commitFloor measures n fenced commit transactions on the same etcd, under a root of
// their own so that the agent does not take the partition.
func commitFloor(b *testing.B, agentClient *coordination.Client, n int) []time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := coordination.New(agentClient.Etcd(), coordination.Options{Root: "/floor"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.CreateTopic(ctx, coordination.TopicSpec{Name: "floor", Partitions: 1}); err != nil {
		b.Fatal(err)
	}
	s, err := c.NewSession(ctx, coordination.NodeInfo{Node: "floor"}, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Close(ctx) }()
	l, err := s.Acquire(ctx, "floor", 0)
	if err != nil {
		b.Fatal(err)
	}
	var out []time.Duration
	for i := range int64(n) {
		t0 := time.Now()
		if _, err := l.Commit(ctx, coordination.SegmentMeta{Object: "x", Base: i * 5, Last: i*5 + 4, Records: 5}); err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(t0))
	}
	return out
}
