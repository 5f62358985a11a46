package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamhouse/streamhouse/tests/harness"
)

// kafkaReport is the max-rate produce over the Kafka protocol.
type kafkaReport struct {
	Records       int64   `json:"records"`
	Errors        int64   `json:"errors"`
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_sec"`
	MiBPerSec     float64 `json:"mib_per_sec"`
}

// kgoBufferedRecords is the kgo producer's window: records produced and not yet acked
// (kgo's default is 10,000). Ten times the default, so that 100 partitions each have a
// batch of up to 1 MB on its way, as the 100-partition phase's "full load" means.
const kgoBufferedRecords = 100_000

// kafkaProduce runs franz-go's kgo producer against the agent's Kafka listener for
// duration: its defaults (idempotent, acks=all: an ack after the durable commit; batches
// of up to 1 MB per partition) but kgoBufferedRecords, no compression, 1 KiB values cut
// at random from random letters and digits as `streamctl bench` sends, over a new topic
// of that many partitions.
func kafkaProduce(ctx context.Context, addr, topic string, partitions int32, duration time.Duration) (kafkaReport, error) {
	var r kafkaReport
	fmt.Fprintf(os.Stderr, "kgo produce to %s, topic %s of %d partitions, for %s\n", addr, topic, partitions, duration)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MaxBufferedRecords(kgoBufferedRecords))
	if err != nil {
		return r, err
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	resp, err := kadm.NewClient(cl).CreateTopic(cctx, partitions, 1, nil, topic)
	cancel()
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return r, fmt.Errorf("create topic %s: %w", topic, err)
	}
	pool := harness.RandomText(8<<20, 5)
	rng := rand.New(rand.NewPCG(5, 6))
	var acked, failed atomic.Int64
	start := time.Now()
	for time.Since(start) < duration && ctx.Err() == nil {
		off := rng.IntN(len(pool) - 1024)
		// Produce blocks while MaxBufferedRecords are unacked: the producer's window.
		cl.Produce(ctx, &kgo.Record{Value: pool[off : off+1024 : off+1024]}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
				return
			}
			acked.Add(1)
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return r, err
	}
	r.Seconds = time.Since(start).Seconds()
	r.Records, r.Errors = acked.Load(), failed.Load()
	r.RecordsPerSec = float64(r.Records) / r.Seconds
	r.MiBPerSec = r.RecordsPerSec * 1024 / (1 << 20)
	return r, nil
}
