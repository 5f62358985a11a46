package kafka

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway"
)

// idempotentBatch is sampleRecords(n) as a batch of producer 9, epoch 1, from sequence seq.
func idempotentBatch(n int, seq int32) []byte {
	b := appendBatch(nil, sampleRecords(n))
	binary.BigEndian.PutUint64(b[43:], 9)           // producer id
	binary.BigEndian.PutUint16(b[51:], 1)           // producer epoch
	binary.BigEndian.PutUint32(b[53:], uint32(seq)) // first sequence
	return reCRC(b)
}

// TestWritesOfAPartition: a partition's batches become one write, or one per batch for an
// idempotent producer, and what cannot be written is refused before anything is sent.
func TestWritesOfAPartition(t *testing.T) {
	s := &Server{limits: gateway.Limits{MaxBatchRecords: 5}.WithDefaults()}
	p := coordination.Partition{Topic: "t", Partition: 0}
	plain := append(appendBatch(nil, sampleRecords(2)), appendBatch(nil, sampleRecords(3))...)
	writes, used, err := s.writesOf(p, plain, 1<<20)
	if err != nil || len(writes) != 1 || len(writes[0].Records) != 5 || writes[0].ProducerId != 0 || used == 0 {
		t.Fatalf("two plain batches: %v writes, %d bytes, %v", writes, used, err)
	}
	idem := append(idempotentBatch(2, 10), idempotentBatch(2, 12)...)
	writes, _, err = s.writesOf(p, idem, 1<<20)
	if err != nil || len(writes) != 2 || writes[1].ProducerId != 9 || writes[1].ProducerEpoch != 1 || writes[1].BaseSequence != 12 {
		t.Fatalf("two idempotent batches: %v, %v", writes, err)
	}
	for name, c := range map[string]struct {
		raw    []byte
		budget int
		code   int16
	}{
		"mixed":            {append(idempotentBatch(1, 0), appendBatch(nil, sampleRecords(1))...), 1 << 20, kerr.InvalidRecord.Code},
		"too many records": {append(plain, appendBatch(nil, sampleRecords(1))...), 1 << 20, kerr.MessageTooLarge.Code},
		"over the budget":  {plain, 10, kerr.MessageTooLarge.Code},
	} {
		if _, _, err := s.writesOf(p, c.raw, c.budget); err == nil || err.code != c.code {
			t.Errorf("%s: %v, want code %d", name, err, c.code)
		}
	}
}

// seqPartition is a partition's sequence check alone (actors does the real one): it
// takes any first sequence number from a producer it does not know, then only the next
// one, and refuses any other as out of order. A batch from sequence hold waits until
// released is closed; a batch from sequence fail is refused as unavailable.
type seqPartition struct {
	mu         sync.Mutex
	known      bool
	next       int32
	ids        []uint64 // request ids, in the order they arrived
	hold, fail int32
	released   chan struct{}
}

func (p *seqPartition) ProduceRequest(ctx context.Context, req *partitionpb.ProduceRequest) (*partitionpb.ProduceResponse, error) {
	if req.RequestId == 0 {
		req.RequestId = rand.Uint64() // as actors.Client does
	}
	if req.BaseSequence == p.hold && p.released != nil {
		<-p.released
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ids = append(p.ids, req.RequestId)
	switch {
	case req.BaseSequence == p.fail:
		return &partitionpb.ProduceResponse{Code: partitionpb.Code_CODE_UNAVAILABLE, Message: "moving"}, nil
	case p.known && req.BaseSequence != p.next:
		return &partitionpb.ProduceResponse{Code: partitionpb.Code_CODE_OUT_OF_ORDER_SEQUENCE, Message: "gap"}, nil
	}
	p.known, p.next = true, req.BaseSequence+int32(len(req.Records))
	return &partitionpb.ProduceResponse{Code: partitionpb.Code_CODE_OK, BaseOffset: int64(req.BaseSequence), Count: int32(len(req.Records))}, nil
}

func (p *seqPartition) arrived() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}

func idempotentJob(seq int32, n int) *produceJob {
	rp := kmsg.NewProduceResponseTopicPartition()
	return &produceJob{p: coordination.Partition{Topic: "t"}, out: &rp, done: make(chan struct{}),
		requests: []*partitionpb.ProduceRequest{{Topic: "t", Records: sampleRecords(n), ProducerId: 9, ProducerEpoch: 1, BaseSequence: seq}}}
}

// pipelined writes first, held at its partition, and second after it, and returns once
// second's first attempt reached the partition or, for a strict second, after a while.
func pipelined(t *testing.T, p *seqPartition, first, second *produceJob) (finished chan struct{}) {
	t.Helper()
	second.prev = first
	go writeJob(context.Background(), p, first)
	finished = make(chan struct{})
	go func() { writeJob(context.Background(), p, second); close(finished) }()
	deadline := time.Now().Add(50 * time.Millisecond)
	for p.arrived() == 0 && (!second.strict || time.Now().Before(deadline)) {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-finished:
		t.Fatalf("the second batch was answered before the first: code %d", second.out.ErrorCode)
	case <-time.After(50 * time.Millisecond):
	}
	return finished
}

// TestPipelinedBatchKeepsItsProducersOrder: a batch that reaches its partition ahead of
// the one before it (its connection's previous request, still in flight) is refused as
// out of order, sent again with a new request id once that one is answered, and written
// after it; with nothing ahead of it in flight, out of order is the producer's gap and
// the client is told.
func TestPipelinedBatchKeepsItsProducersOrder(t *testing.T) {
	p := &seqPartition{known: true, hold: 0, fail: -1, released: make(chan struct{})}
	first, second := idempotentJob(0, 3), idempotentJob(3, 2)
	finished := pipelined(t, p, first, second)
	close(p.released)
	<-finished
	if first.out.ErrorCode != 0 || first.out.BaseOffset != 0 || second.out.ErrorCode != 0 || second.out.BaseOffset != 3 {
		t.Fatalf("first: code %d at %d; second: code %d at %d, want 0 at 0 and 0 at 3",
			first.out.ErrorCode, first.out.BaseOffset, second.out.ErrorCode, second.out.BaseOffset)
	}
	if len(p.ids) != 3 || p.ids[0] == p.ids[2] {
		t.Fatalf("request ids as they arrived: %v; want the second batch's refused attempt, the first batch, the second again under a new id", p.ids)
	}

	gap := idempotentJob(9, 1)
	gap.prev = second // answered already
	writeJob(context.Background(), p, gap)
	if gap.out.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("a gap with nothing ahead in flight: code %d, want OUT_OF_ORDER_SEQUENCE_NUMBER", gap.out.ErrorCode)
	}
	if p.next != 5 {
		t.Fatalf("the partition's next sequence is %d after the gap, want 5: nothing written", p.next)
	}
}

// TestStrictBatchWaitsForTheOneBefore: while the partition may not know the producer
// (no batch of it known written on the connection), the next batch is not sent until the
// one before it is written, since the partition would take it as the producer's start;
// and it is not sent at all when that one failed.
func TestStrictBatchWaitsForTheOneBefore(t *testing.T) {
	p := &seqPartition{hold: 0, fail: -1, released: make(chan struct{})}
	first, second := idempotentJob(0, 3), idempotentJob(3, 2)
	second.strict = true
	finished := pipelined(t, p, first, second)
	if n := p.arrived(); n != 0 {
		t.Fatalf("%d batches reached the partition while the producer's first was held; want none", n)
	}
	close(p.released)
	<-finished
	if first.out.ErrorCode != 0 || second.out.ErrorCode != 0 || second.out.BaseOffset != 3 || len(p.ids) != 2 {
		t.Fatalf("first: code %d; second: code %d at %d; %d attempts; want both written, at 0 and 3, in two",
			first.out.ErrorCode, second.out.ErrorCode, second.out.BaseOffset, len(p.ids))
	}

	p = &seqPartition{hold: -1, fail: 0}
	first, second = idempotentJob(0, 3), idempotentJob(3, 2)
	second.prev, second.strict = first, true
	writeJob(context.Background(), p, first)
	writeJob(context.Background(), p, second)
	if first.written() || second.out.ErrorCode != kerr.OutOfOrderSequenceNumber.Code || len(p.ids) != 1 {
		t.Fatalf("after a failed first batch: second's code %d, %d attempts; want OUT_OF_ORDER_SEQUENCE_NUMBER and only the first sent",
			second.out.ErrorCode, len(p.ids))
	}
}
