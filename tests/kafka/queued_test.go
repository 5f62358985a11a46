package kafka_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamhouse/streamhouse/tests/harness"
)

// TestQueuedRequestBytesSlowClientsInsteadOfGrowing gives an agent's Kafka listener 1 MiB
// of queued request bytes (--kafka-max-queued-bytes) and 8 producers that send 2 MiB
// each at once: frames wait to be read rather than the agent holding them all, every
// record is acked and read back once, and the budget is all given back.
func TestQueuedRequestBytesSlowClientsInsteadOfGrowing(t *testing.T) {
	c := newCluster(t, 1, func(int) []string { return []string{"--kafka-max-queued-bytes", strconv.Itoa(1 << 20)} })
	const topic, producers, perProducer, size = "queued", 8, 32, 64 << 10
	c.createTopic(topic, 6, nil)
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		// A linger long enough that each producer's records leave in one request or two.
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.seeds()...), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer cl.Close()
			recs := make([]*kgo.Record, perProducer)
			for i := range recs {
				v := []byte(fmt.Sprintf("p%d-%d-", p, i))
				recs[i] = &kgo.Record{Value: append(v, make([]byte, size-len(v))...)}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			errs <- cl.ProduceSync(ctx, recs...).FirstErr()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
	}

	consumer, err := kgo.NewClient(kgo.SeedBrokers(c.seeds()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	var got []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(got) < producers*perProducer && ctx.Err() == nil {
		fs := consumer.PollFetches(ctx)
		got = append(got, fs.Records()...)
	}
	consumer.Close()
	seen := map[string]bool{}
	for _, r := range got {
		id := string(r.Value[:strings.LastIndexByte(string(r.Value[:32]), '-')])
		if seen[id] {
			t.Fatalf("record %s read twice", id)
		}
		seen[id] = true
	}
	if len(seen) != producers*perProducer {
		t.Fatalf("read %d records of %d acked", len(seen), producers*perProducer)
	}

	if harness.MetricSum(harness.Metrics(t, c.agents[0].AdminAddr), "streamhouse_kafka_queued_request_waits_total ") == 0 {
		t.Fatal("16 MiB sent at once through 1 MiB of queued bytes, and no frame waited")
	}
	// Every client closed: whatever its connections sent is answered, and given back.
	harness.Eventually(t, 10*time.Second, func() error {
		if held := harness.MetricSum(harness.Metrics(t, c.agents[0].AdminAddr), "streamhouse_kafka_queued_request_bytes "); held != 0 {
			return fmt.Errorf("%v queued bytes held with every client closed", held)
		}
		return nil
	})
}
