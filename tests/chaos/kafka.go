package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// kafkaProduceTimeout bounds one produce over Kafka, kgo's own retries included; a
// produce that does not finish within it has an unknown outcome.
const kafkaProduceTimeout = 30 * time.Second

// produceKafka is produce over the Kafka protocol: a kgo idempotent producer of its own,
// seeded with every agent, sends each request's values to one partition and lets kgo
// retry (same producer id and sequence numbers, through whichever agent its metadata
// names) until acked or the timeout.
func (w *workload) produceKafka(id int, rng *rand.Rand) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(w.kafka...), kgo.DefaultProduceTopic(w.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ClientID(fmt.Sprintf("chaos-producer-%d", id)),
		kgo.RetryBackoffFn(func(n int) time.Duration { return time.Duration(min(50*n, 500)) * time.Millisecond }))
	if err != nil {
		panic(err) // options are constant: only a bug gets here
	}
	defer cl.Close()
	for seq := 0; !w.stopped(); seq++ {
		p := int32((seq + id) % int(w.partitions))
		var recs []*kgo.Record
		for k := range 1 + rng.IntN(maxRecords) {
			recs = append(recs, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "k%d-%d-%d", id, seq, k)})
		}
		w.mu.Lock()
		for _, r := range recs {
			w.h.Sent[string(r.Value)] = true
		}
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), kafkaProduceTimeout)
		results := cl.ProduceSync(ctx, recs...)
		cancel()
		if results.FirstErr() == nil {
			now := time.Now()
			w.mu.Lock()
			for _, r := range results {
				w.h.Acks = append(w.h.Acks, Ack{Partition: r.Record.Partition, Offset: r.Record.Offset, Value: string(r.Record.Value)})
				w.ackTimes[r.Record.Partition] = append(w.ackTimes[r.Record.Partition], now)
			}
			w.mu.Unlock()
		}
		if !w.pause(time.Duration(5+rng.IntN(10)) * time.Millisecond) {
			return
		}
	}
}

// followKafka tails every partition from offset 0 with one kgo consumer, as a Kafka
// consumer reading everything would.
func (w *workload) followKafka() {
	offsets := map[int32]kgo.Offset{}
	for p := range w.partitions {
		offsets[p] = kgo.NewOffset().At(0)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(w.kafka...), kgo.ClientID("chaos-follower"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{w.topic: offsets}), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	next := map[int32]int64{}
	w.pollKafka(cl, func(p int32, recs []*pb.Record) { next[p] = w.record(p, next[p], recs) })
}

// pollKafka polls cl until the workload stops, handing each partition's records to fn.
func (w *workload) pollKafka(cl *kgo.Client, fn func(p int32, recs []*pb.Record)) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-w.stop; cancel() }()
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) == 0 {
				return
			}
			recs := make([]*pb.Record, len(fp.Records))
			for i, r := range fp.Records {
				recs[i] = &pb.Record{Offset: r.Offset, Value: r.Value}
			}
			fn(fp.Partition, recs)
		})
	}
}

// consumeGroupKafka is member m of a Kafka consumer group (kgo's: cooperative-sticky
// balancing, offsets committed every second and on revoke, all through whichever agent
// coordinates the group), so that the group's commits cross every fault: a committed
// offset going down is a coordinator committing for a generation that is no longer the
// group's. A partition assigned to the member starts over at its first record (wherever
// the group's offset was); within an assignment, records must follow on.
func (w *workload) consumeGroupKafka(m int) {
	var mu sync.Mutex
	next := map[int32]int64{} // -1: assigned, not yet read
	assigned := func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range a[w.topic] {
			next[p] = -1
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(w.kafka...), kgo.ClientID(fmt.Sprintf("chaos-member-%d", m)),
		kgo.ConsumerGroup(groupName), kgo.ConsumeTopics(w.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond), kgo.AutoCommitInterval(time.Second), kgo.OnPartitionsAssigned(assigned))
	if err != nil {
		panic(err) // options are constant: only a bug gets here
	}
	defer cl.Close() // commits what was polled, as a member leaving does
	w.pollKafka(cl, func(p int32, recs []*pb.Record) {
		mu.Lock()
		defer mu.Unlock()
		from, ok := next[p]
		if !ok || from < 0 {
			from = recs[0].Offset
		}
		next[p] = w.record(p, from, recs)
	})
}
