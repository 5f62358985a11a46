package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// Workload sizes.
const (
	producers      = 4
	maxRecords     = 3 // per produce request
	produceTimeout = 5 * time.Second
	maxAttempts    = 20 // per request, with backoff, before its outcome is left unknown
	groupName      = "chaos-group"
	groupMembers   = 2
)

// workload drives the cluster through the gateways of all agents and records History.
type workload struct {
	clients    []pb.StreamHouseClient
	topic      string
	partitions int32
	// kafka, when set, are the agents' Kafka addresses: producers, followers and the
	// consumer group then speak the Kafka protocol (kafka.go); the group's watcher and
	// the final read stay on gRPC.
	kafka []string

	mu       sync.Mutex
	h        History
	ackTimes map[int32][]time.Time

	stop  chan struct{} // closed: producers start nothing new, readers and the group stop
	halts sync.Once
	wg    sync.WaitGroup
}

func newWorkload(clients []pb.StreamHouseClient, topic string, partitions int32) *workload {
	return &workload{clients: clients, topic: topic, partitions: partitions, stop: make(chan struct{}),
		h:        History{Sent: map[string]bool{}, Final: map[int32][]Read{}, HWM: map[int32]int64{}},
		ackTimes: map[int32][]time.Time{}}
}

func (w *workload) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// pause waits d or until the workload stops; it says whether to go on.
func (w *workload) pause(d time.Duration) bool {
	select {
	case <-w.stop:
		return false
	case <-time.After(d):
		return true
	}
}

func (w *workload) start(seed uint64) {
	for i := range producers {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		if w.kafka != nil {
			w.wg.Go(func() { w.produceKafka(i, rng) })
		} else {
			w.wg.Go(func() { w.produce(i, rng) })
		}
	}
	if w.kafka != nil {
		w.wg.Go(w.followKafka)
	} else {
		for p := range w.partitions {
			w.wg.Go(func() { w.follow(p, rand.New(rand.NewPCG(seed, 100+uint64(p)))) })
		}
	}
	for m := range groupMembers {
		if w.kafka != nil {
			w.wg.Go(func() { w.consumeGroupKafka(m) })
		} else {
			w.wg.Go(func() { w.consumeGroup(m, rand.New(rand.NewPCG(seed, 200+uint64(m)))) })
		}
	}
	w.wg.Go(w.watchGroup)
}

// halt stops the workload and waits for it; later calls do nothing (a failed run halts
// it in its cleanup).
func (w *workload) halt() { w.halts.Do(func() { close(w.stop); w.wg.Wait() }) }

// produce sends unique values, retrying each request (same values, possibly through
// another agent) until acked or maxAttempts; a request never acked has an unknown
// outcome: its values may or may not be in the log, and may be there twice.
func (w *workload) produce(id int, rng *rand.Rand) {
	for seq := 0; !w.stopped(); seq++ {
		p := int32((seq + id) % int(w.partitions))
		// An id of its own, kept on every retry: a retry of a request whose outcome was
		// unknown is answered with its offsets rather than written again.
		req := &pb.ProduceRequest{Topic: w.topic, Partition: &p, RequestId: rng.Uint64() | 1}
		var values []string
		for k := range 1 + rng.IntN(maxRecords) {
			v := fmt.Sprintf("p%d-%d-%d", id, seq, k)
			values = append(values, v)
			req.Records = append(req.Records, &pb.Record{Value: []byte(v)})
		}
		w.mu.Lock()
		for _, v := range values {
			w.h.Sent[v] = true
		}
		w.mu.Unlock()
		for attempt := range maxAttempts {
			ctx, cancel := context.WithTimeout(context.Background(), produceTimeout)
			resp, err := w.clients[rng.IntN(len(w.clients))].Produce(ctx, req)
			cancel()
			if err == nil && len(resp.Acks) == len(values) {
				now := time.Now()
				w.mu.Lock()
				for i, a := range resp.Acks {
					w.h.Acks = append(w.h.Acks, Ack{Partition: a.Partition, Offset: a.Offset, Value: values[i]})
					w.ackTimes[a.Partition] = append(w.ackTimes[a.Partition], now)
				}
				w.mu.Unlock()
				break
			}
			if !w.pause(time.Duration(min(50*(attempt+1), 500)) * time.Millisecond) {
				break
			}
		}
		if !w.pause(time.Duration(5+rng.IntN(10)) * time.Millisecond) {
			return
		}
	}
}

// fetch reads records of p from offset through a random agent.
func (w *workload) fetch(rng *rand.Rand, p int32, offset int64, wait time.Duration) (*pb.FetchResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait+5*time.Second)
	defer cancel()
	return w.clients[rng.IntN(len(w.clients))].Fetch(ctx, &pb.FetchRequest{
		Topic: w.topic, Partition: p, Offset: offset, MaxBytes: 256 << 10, MaxWaitMs: int32(wait.Milliseconds())})
}

// record keeps what a reader saw from offset; it returns the next offset to read.
func (w *workload) record(p int32, offset int64, recs []*pb.Record) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range recs {
		if r.Offset != offset {
			w.h.ReadGaps++
		}
		w.h.Reads = append(w.h.Reads, Read{Partition: p, Offset: r.Offset, Value: string(r.Value)})
		offset = r.Offset + 1
	}
	return offset
}

// follow tails partition p from offset 0, as a consumer reading everything would.
func (w *workload) follow(p int32, rng *rand.Rand) {
	offset := int64(0)
	for !w.stopped() {
		resp, err := w.fetch(rng, p, offset, 500*time.Millisecond)
		if err != nil {
			if !w.pause(200 * time.Millisecond) {
				return
			}
			continue
		}
		offset = w.record(p, offset, resp.Records)
	}
}

// consumeGroup is one member of a consumer group that owns the partitions p with
// p % groupMembers == m: it resumes from the committed offsets, reads, and commits what
// it read. It never commits below an offset it committed before, so any committed offset
// going down is the cluster's doing.
func (w *workload) consumeGroup(m int, rng *rand.Rand) {
	next := map[int32]int64{}
	committed := map[int32]int64{}
	resume := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := w.clients[rng.IntN(len(w.clients))].FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: groupName})
		if err != nil {
			return false
		}
		for _, o := range resp.Offsets {
			next[o.Partition] = o.Offset
		}
		return true
	}
	for !resume() {
		if !w.pause(200 * time.Millisecond) {
			return
		}
	}
	for !w.stopped() {
		for p := int32(m); p < w.partitions; p += groupMembers {
			resp, err := w.fetch(rng, p, next[p], 100*time.Millisecond)
			if err != nil || len(resp.Records) == 0 {
				continue
			}
			next[p] = w.record(p, next[p], resp.Records)
			offset := max(next[p], committed[p])
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err = w.clients[rng.IntN(len(w.clients))].CommitOffsets(ctx, &pb.CommitOffsetsRequest{Group: groupName,
				Offsets: []*pb.PartitionOffset{{Topic: w.topic, Partition: p, Offset: offset}}})
			cancel()
			committed[p] = offset // attempted: its outcome may be unknown
			if err != nil {
				resume() // as a restarted member would
			}
		}
		if !w.pause(50 * time.Millisecond) {
			return
		}
	}
}

// watchGroup observes the group's committed offsets.
func (w *workload) watchGroup() {
	rng := rand.New(rand.NewPCG(1, 1))
	for w.pause(300 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := w.clients[rng.IntN(len(w.clients))].FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: groupName})
		cancel()
		if err != nil {
			continue
		}
		w.mu.Lock()
		for _, o := range resp.Offsets {
			if o.Topic == w.topic {
				w.h.Groups = append(w.h.Groups, GroupCommit{Partition: o.Partition, Offset: o.Offset})
			}
		}
		w.mu.Unlock()
	}
}

// readAll reads every partition from 0 to its high-water mark into the history, retrying
// through other agents until deadline.
func (w *workload) readAll(deadline time.Time) error {
	rng := rand.New(rand.NewPCG(2, 2))
	for p := range w.partitions {
		offset, hwm := int64(0), int64(-1)
		var recs []Read
		for hwm < 0 || offset < hwm {
			if time.Now().After(deadline) {
				return fmt.Errorf("final read of partition %d stuck at offset %d of %d", p, offset, hwm)
			}
			resp, err := w.fetch(rng, p, offset, 0)
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			hwm = max(hwm, resp.HighWaterMark)
			for _, r := range resp.Records {
				recs = append(recs, Read{Partition: p, Offset: r.Offset, Value: string(r.Value)})
				offset = r.Offset + 1
			}
			if len(resp.Records) == 0 && offset < hwm {
				time.Sleep(100 * time.Millisecond)
			}
		}
		w.mu.Lock()
		w.h.Final[p], w.h.HWM[p] = recs, hwm
		w.mu.Unlock()
	}
	return nil
}

// ackedSince is nil once every partition has an ack after t.
func (w *workload) ackedSince(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var idle []string
	for p := range w.partitions {
		ts := w.ackTimes[p]
		if len(ts) == 0 || !ts[len(ts)-1].After(t) {
			idle = append(idle, strconv.Itoa(int(p)))
		}
	}
	if len(idle) > 0 {
		return fmt.Errorf("no ack on partitions %s", strings.Join(idle, ","))
	}
	return nil
}
