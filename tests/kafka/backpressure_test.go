package kafka_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamhouse/streamhouse/tests/harness"
)

// TestBackpressureWaitsWithinTheRequest gives an agent 1 MiB of pending bytes
// (--max-pending-bytes) and 4 kgo producers that send 4 MiB each at once: the
// partitions refuse batches past the budget, and the listener waits and sends them again
// within the request rather than answering the client a timeout, which makes an
// idempotent producer back off and resend the batches behind them out of order, and
// fails the records of one allowed a single try. Two producers are idempotent (kgo's
// default), two are not and have one try per record: every record is acked and read
// back once.
func TestBackpressureWaitsWithinTheRequest(t *testing.T) {
	c := newCluster(t, 1, func(int) []string {
		return []string{"--max-pending-bytes", strconv.Itoa(1 << 20)}
	})
	const topic, producers, perProducer, size = "pressed", 4, 64, 64 << 10
	c.createTopic(topic, 6, nil)
	c.produceAtOnce(topic, producers, perProducer, size, func(p int) []kgo.Opt {
		opts := []kgo.Opt{kgo.ProducerLinger(20 * time.Millisecond)}
		if p%2 == 1 {
			opts = append(opts, kgo.DisableIdempotentWrite(), kgo.RecordRetries(1))
		}
		return opts
	})
	body := harness.Metrics(t, c.agents[0].AdminAddr)
	waits := harness.MetricSum(body, "streamhouse_kafka_produce_backpressure_waits_total ")
	if waits == 0 {
		t.Fatal("16 MiB sent at once through 1 MiB of pending bytes, and no batch waited")
	}
	consumer := c.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err := c.readOnce(consumer, topic, producers*perProducer); err != nil {
		t.Fatal(err)
	}
	t.Logf("%.0f batches waited for the pending budget", waits)
}
