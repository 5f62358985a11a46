package kafka_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamhouse/streamhouse/tests/harness"
)

// BenchmarkKgoProduce measures what a kgo producer (idempotent, acks=all, its default
// batching, no compression) gets from one agent with real etcd and MinIO: 1 KiB records
// over 6 partitions, b.N records. Run: go test ./tests/kafka -run '^$' -bench KgoProduce
// -benchtime 600000x. It then runs `streamctl bench produce` (gRPC) against the same agent
// for as long, and reports both rates and their ratio.
func BenchmarkKgoProduce(b *testing.B) {
	// No merging: the two runs compare the protocols, not the merges of the first run's
	// data competing with the second.
	c := newCluster(b, 1, func(int) []string { return []string{"--compact-interval", "-1s"} })
	c.createTopic("bench", 6, nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.seeds()...), kgo.DefaultProduceTopic("bench"),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MaxBufferedRecords(100000))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	// Values cut at random from a pool of random letters and digits, as `streamctl bench`
	// makes them: LZ4 finds nothing to compress, so the store gets every byte (a repeated
	// pattern would be stored at a fraction of its size and flatter the rate).
	pool := harness.RandomText(8<<20, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	const size = 1024
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed error
	b.SetBytes(size)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		wg.Add(1)
		off := rng.IntN(len(pool) - size)
		cl.Produce(ctx, &kgo.Record{Value: pool[off : off+size : off+size]}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	b.StopTimer()
	if failed != nil {
		b.Fatal(failed)
	}
	kafkaRate := float64(b.N) / took.Seconds()
	b.ReportMetric(kafkaRate, "records/s")

	// The same agent over gRPC, as long: `streamctl bench produce`, its defaults (4
	// producers, 100 records per request, 8 requests in flight each).
	ctl, err := harness.Command("streamctl")
	if err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command(ctl, "bench", "produce", "--addr", c.agents[0].GRPCAddr, "--topic", "bench-grpc",
		"--duration", max(took, 5*time.Second).Round(time.Second).String(), "--progress", "0", "--json").Output()
	if err != nil {
		b.Fatalf("streamctl bench: %v\n%s", err, out)
	}
	var report struct {
		Produce struct {
			RecordsPerSec float64 `json:"records_per_sec"`
			Errors        uint64  `json:"errors"`
		} `json:"produce"`
	}
	if err := json.Unmarshal(out, &report); err != nil || report.Produce.Errors != 0 {
		b.Fatalf("streamctl bench: %v, %d errors\n%s", err, report.Produce.Errors, out)
	}
	b.ReportMetric(report.Produce.RecordsPerSec, "grpc-records/s")
	b.ReportMetric(kafkaRate/report.Produce.RecordsPerSec, "kafka/grpc")
}
