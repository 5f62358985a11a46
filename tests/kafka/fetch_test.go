package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/tests/harness"
)

// A fetch waiting for more than its partitions have keeps one long-poll parked at each
// partition's log end: while records keep coming to one partition, the other's poll,
// which a round stopped waiting for, stays that partition's poll instead of being asked
// again. Before, every round parked another poll at the idle partition (each living up to
// a second), and the records of one partition came with as many rounds.
func TestAWaitingFetchKeepsOnePollPerPartition(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.createTopic("polls", 2, nil)
	cl := c.client(kgo.DefaultProduceTopic("polls"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	broker := cl.Broker(int(metadata(t, c, "fetcher").Brokers[0].NodeID))

	req := fetchRequest(12, "polls", 4*time.Second)
	req.MinBytes = 1 << 20 // more than comes: the fetch waits its whole max wait
	pp := kmsg.NewFetchRequestTopicPartition()
	pp.Partition, pp.PartitionMaxBytes = 1, 1<<20
	req.Topics[0].Partitions = append(req.Topics[0].Partitions, pp)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type answer struct {
		resp *kmsg.FetchResponse
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := req.RequestWith(ctx, broker)
		answered <- answer{resp, err}
	}()
	// Records come to partition 0 every 100 ms while the fetch waits; the polls parked
	// at the agent are sampled as they come.
	var wg sync.WaitGroup
	wg.Add(1)
	done := make(chan struct{})
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond): // a pace, not a wait
			}
			_ = cl.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: []byte("v")}).FirstErr()
		}
	}()
	most := 0.0
	var got answer
	for sampling := true; sampling; {
		select {
		case got = <-answered:
			sampling = false
		case <-time.After(50 * time.Millisecond): // a pace, not a wait
			body := harness.Metrics(t, c.agents[0].AdminAddr)
			most = max(most, harness.MetricSum(body, "streamhouse_fetch_waiting "))
		}
	}
	close(done)
	wg.Wait()
	if got.err != nil {
		t.Fatal(got.err)
	}
	if most > 2 {
		t.Fatalf("%v fetches parked at the agent at once for one fetch of 2 partitions, want at most 2", most)
	}
	// What partition 0 got is contiguous from 0, over however many rounds it came.
	p0 := got.resp.Topics[0].Partitions[0]
	next := int64(0)
	for b := p0.RecordBatches; len(b) > 0; {
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(b); err != nil {
			t.Fatal(err)
		}
		if rb.FirstOffset != next || int64(rb.NumRecords) != int64(rb.LastOffsetDelta)+1 {
			t.Fatalf("partition 0's answer has a batch of %d records from %d to %d after records up to %d",
				rb.NumRecords, rb.FirstOffset, rb.FirstOffset+int64(rb.LastOffsetDelta), next-1)
		}
		next += int64(rb.LastOffsetDelta) + 1
		b = b[12+rb.Length:]
	}
	if next < 5 {
		t.Fatalf("partition 0's answer holds %d records of the ~40 produced while the fetch waited", next)
	}
	t.Logf("one fetch of 4s: %d records of partition 0, at most %v polls parked", next, most)
}

// A long poll ends when its client hangs up: the agent stops polling the partitions
// within a round (a second) instead of parking reads at their log ends until the fetch's
// max wait. Before, nothing read the connection while the fetch was served, and its
// rounds went on for all of its 20 s.
func TestALongPollEndsWhenItsClientHangsUp(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.createTopic("hangup", 1, nil)
	cl := c.client(kgo.DefaultProduceTopic("hangup"))
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waiting := func() float64 {
		return harness.MetricSum(harness.Metrics(t, c.agents[0].AdminAddr), "streamhouse_fetch_waiting ")
	}
	raw := dialRaw(t, c.agents[0].KafkaAddr)
	req := fetchRequest(11, "hangup", 20*time.Second)
	req.Topics[0].Partitions[0].FetchOffset = 1 // the log end
	raw.send(req.Key(), req.Version, req.AppendTo(nil))
	harness.Eventually(t, 10*time.Second, func() error {
		if waiting() == 0 {
			return fmt.Errorf("the fetch is not parked at the log end")
		}
		return nil
	})
	_ = raw.c.Close()
	// None parked for longer than a round: a fetch still polling parks one every second,
	// and a sample could fall between two.
	var none time.Time
	harness.Eventually(t, 8*time.Second, func() error {
		if n := waiting(); n != 0 {
			none = time.Time{}
			return fmt.Errorf("%v polls still parked after the client hung up", n)
		}
		if none.IsZero() {
			none = time.Now()
		}
		if d := time.Since(none); d < 1500*time.Millisecond {
			return fmt.Errorf("no poll parked for %v only", d)
		}
		return nil
	})
}
