package kafka

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway"
	"github.com/streamhouse/streamhouse/gateway/membudget"
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
	if want := 5*recordOverhead + 2*len("value-0") + len("key-0") + 3; used < want {
		t.Fatalf("two plain batches of 5 records counted %d bytes of memory, want at least %d", used, want)
	}
	writes, _, err = s.writesOf(p, idempotentBatch(2, 10), 1<<20)
	if err != nil || len(writes) != 1 || writes[0].ProducerId != 9 || writes[0].ProducerEpoch != 1 || writes[0].BaseSequence != 10 {
		t.Fatalf("an idempotent batch: %v, %v", writes, err)
	}
	for name, c := range map[string]struct {
		raw    []byte
		budget int
		code   int16
	}{
		"mixed": {append(idempotentBatch(1, 0), appendBatch(nil, sampleRecords(1))...), 1 << 20, kerr.InvalidRecord.Code},
		// Were the first a retry's duplicate, its answer would stand for the second.
		"two idempotent":   {append(idempotentBatch(2, 10), idempotentBatch(2, 12)...), 1 << 20, kerr.InvalidRecord.Code},
		"too many records": {append(plain, appendBatch(nil, sampleRecords(1))...), 1 << 20, kerr.MessageTooLarge.Code},
		"over the budget":  {plain, 10, kerr.MessageTooLarge.Code},
	} {
		if _, _, err := s.writesOf(p, c.raw, c.budget); err == nil || err.code != c.code {
			t.Errorf("%s: %v, want code %d", name, err, c.code)
		}
	}
}

// seqPartition is a partition's sequence check alone (actors does the real one): it
// takes any first sequence number from a producer it does not know, unless the batch
// follows another, then only the next one, and refuses any other as out of order. A
// batch from sequence hold waits until released is closed; a batch from sequence fail is
// refused as unavailable.
type seqPartition struct {
	mu         sync.Mutex
	known      bool
	next       int32
	reqs       []*partitionpb.ProduceRequest // in the order they arrived
	hold, fail int32
	busy       int // attempts refused for backpressure before any is taken
	released   chan struct{}
	arrival    chan struct{} // closed when the first batch arrives
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
	if len(p.reqs) == 0 && p.arrival != nil {
		close(p.arrival)
	}
	p.reqs = append(p.reqs, req)
	switch {
	case p.busy > 0:
		p.busy--
		return &partitionpb.ProduceResponse{Code: partitionpb.Code_CODE_RESOURCE_EXHAUSTED, Message: "busy"}, nil
	case req.BaseSequence == p.fail:
		return &partitionpb.ProduceResponse{Code: partitionpb.Code_CODE_UNAVAILABLE, Message: "moving"}, nil
	case !p.known && req.Follows, p.known && req.BaseSequence != p.next:
		return &partitionpb.ProduceResponse{Code: partitionpb.Code_CODE_OUT_OF_ORDER_SEQUENCE, Message: "gap"}, nil
	}
	p.known, p.next = true, req.BaseSequence+int32(len(req.Records))
	return &partitionpb.ProduceResponse{Code: partitionpb.Code_CODE_OK, BaseOffset: int64(req.BaseSequence), Count: int32(len(req.Records))}, nil
}

func idempotentJob(seq int32, n int) *produceJob {
	rp := kmsg.NewProduceResponseTopicPartition()
	return &produceJob{p: coordination.Partition{Topic: "t"}, out: &rp, done: make(chan struct{}),
		requests: []*partitionpb.ProduceRequest{{Topic: "t", Records: sampleRecords(n), ProducerId: 9, ProducerEpoch: 1, BaseSequence: seq}}}
}

// pipelined writes first, held at its partition, and second following it, and returns
// once second's first attempt reached the partition.
func pipelined(t *testing.T, p *seqPartition, first, second *produceJob) (finished chan struct{}) {
	t.Helper()
	p.arrival = make(chan struct{})
	second.prev, second.requests[0].Follows = first, true
	go writeJob(context.Background(), p, first)
	finished = make(chan struct{})
	go func() { writeJob(context.Background(), p, second); close(finished) }()
	select {
	case <-p.arrival:
	case <-time.After(10 * time.Second):
		t.Fatal("no batch reached the partition")
	}
	select {
	case <-finished:
		t.Fatalf("the second batch was answered before the first: code %d", second.out.ErrorCode)
	case <-time.After(50 * time.Millisecond):
	}
	return finished
}

// TestBusyPartitionIsSentTheSameRequest: a batch its partition refused for backpressure
// is sent again with the request's id, so that an attempt of it still queued at the
// partition (sent by the client after a timeout) and written meanwhile answers it rather
// than have it written twice; a plain producer's batch has nothing else to stop that.
func TestBusyPartitionIsSentTheSameRequest(t *testing.T) {
	p := &seqPartition{hold: -1, fail: -1, busy: 2}
	rp := kmsg.NewProduceResponseTopicPartition()
	j := &produceJob{p: coordination.Partition{Topic: "t"}, out: &rp,
		requests: []*partitionpb.ProduceRequest{{Topic: "t", Records: sampleRecords(2)}}}
	writeJob(context.Background(), p, j)
	if rp.ErrorCode != errNone || len(p.reqs) != 3 {
		t.Fatalf("answered code %d after %d attempts, want written at the third", rp.ErrorCode, len(p.reqs))
	}
	for i, req := range p.reqs {
		if req.RequestId != p.reqs[0].RequestId {
			t.Fatalf("attempt %d went as request %x, the first as %x", i+1, req.RequestId, p.reqs[0].RequestId)
		}
	}
}

// TestPipelinedBatchKeepsItsProducersOrder: a batch that reaches its partition ahead of
// the one before it (its connection's previous request, still in flight) is refused as
// out of order, whether the partition knows the producer or not, is sent again as a new
// request (a new id each time) while that one is on its way, and is written after it.
// With nothing ahead of it in flight, out of order is the producer's gap: the client is
// told and nothing is written.
func TestPipelinedBatchKeepsItsProducersOrder(t *testing.T) {
	for _, known := range []bool{true, false} {
		p := &seqPartition{known: known, hold: 0, fail: -1, released: make(chan struct{})}
		first, second := idempotentJob(0, 3), idempotentJob(3, 2)
		finished := pipelined(t, p, first, second)
		close(p.released)
		<-finished
		if first.out.ErrorCode != 0 || first.out.BaseOffset != 0 || second.out.ErrorCode != 0 || second.out.BaseOffset != 3 {
			t.Fatalf("producer known %v: first: code %d at %d; second: code %d at %d, want 0 at 0 and 0 at 3",
				known, first.out.ErrorCode, first.out.BaseOffset, second.out.ErrorCode, second.out.BaseOffset)
		}
		ids := map[uint64]bool{}
		for _, r := range p.reqs {
			if ids[r.RequestId] {
				t.Fatalf("producer known %v: request id %d sent twice", known, r.RequestId)
			}
			ids[r.RequestId] = true
		}
		if n := len(p.reqs); n < 3 {
			t.Fatalf("producer known %v: %d attempts; want the second batch's refused ones, the first batch, the second again", known, n)
		}
	}

	p := &seqPartition{known: true, next: 5, hold: -1, fail: -1}
	gap := idempotentJob(9, 1)
	writeJob(context.Background(), p, gap)
	if gap.out.ErrorCode != kerr.OutOfOrderSequenceNumber.Code || p.next != 5 {
		t.Fatalf("a gap with nothing ahead in flight: code %d, next sequence %d; want OUT_OF_ORDER_SEQUENCE_NUMBER and 5", gap.out.ErrorCode, p.next)
	}
}

// TestBatchAfterAFailedOneIsNotSent: while the batch ahead is on its way, the one that
// follows it is only ever sent as following it; when the batch ahead fails, the follower
// is answered out of order without being sent again (the partition would take it as the
// producer's start, and the failed batch's retry as a duplicate).
func TestBatchAfterAFailedOneIsNotSent(t *testing.T) {
	p := &seqPartition{hold: 0, fail: 0, released: make(chan struct{})}
	first, second := idempotentJob(0, 3), idempotentJob(3, 2)
	finished := pipelined(t, p, first, second)
	close(p.released)
	<-finished
	if first.written() || second.out.ErrorCode != kerr.OutOfOrderSequenceNumber.Code || p.known {
		t.Fatalf("second's code %d, producer known %v; want OUT_OF_ORDER_SEQUENCE_NUMBER and nothing written", second.out.ErrorCode, p.known)
	}
	for _, r := range p.reqs {
		if r.BaseSequence == 3 && !r.Follows {
			t.Fatalf("the second batch was sent as not following the first")
		}
	}
}

// TestAdmitFollowsOnlyUnansweredJobs: a request's job follows the connection's previous
// job to its partition only while that one is unanswered and of the same producer and
// epoch; an answered one, written or not, constrains nothing (the partition's own state
// decides).
func TestAdmitFollowsOnlyUnansweredJobs(t *testing.T) {
	pl := &pipeline{maxReqs: 10, maxBytes: 1 << 20, last: map[lane]*produceJob{}}
	admitAs := func(producer int64, epoch int32) *produceJob {
		j := idempotentJob(0, 1)
		j.requests[0].ProducerId, j.requests[0].ProducerEpoch = producer, epoch
		pl.admit(&reply{done: make(chan struct{})}, 100, &produceCall{jobs: []*produceJob{j}})
		return j
	}
	admit := func() *produceJob { return admitAs(9, 1) }
	a := admit()
	b := admit()
	if a.prev != nil || a.requests[0].Follows || b.prev != a || !b.requests[0].Follows {
		t.Fatalf("first job: prev %v follows %v; second: prev is first %v follows %v",
			a.prev != nil, a.requests[0].Follows, b.prev == a, b.requests[0].Follows)
	}
	b.out.ErrorCode = kerr.NotLeaderForPartition.Code
	b.finish()
	c := admit()
	if c.prev != nil || c.requests[0].Follows {
		t.Fatalf("a job after an answered one follows it")
	}
	d := idempotentJob(0, 1)
	d.requests[0].ProducerEpoch = 2 // a new epoch starts afresh
	pl.admit(&reply{done: make(chan struct{})}, 100, &produceCall{jobs: []*produceJob{d}})
	if d.prev != nil || d.requests[0].Follows {
		t.Fatalf("a new epoch's first job follows the old epoch's")
	}
	// Two producers' batches on one connection (a proxy's): each follows its own.
	other := admitAs(10, 1)
	e := admit()
	if other.prev != nil || e.prev != c || !e.requests[0].Follows {
		t.Fatalf("another producer's job follows %v; the first producer's next follows its last (%v), follows %v",
			other.prev != nil, e.prev == c, e.requests[0].Follows)
	}
}

// A re-send of a write carries every field of it but those of one attempt: its request
// id (a new request) and its wait; follows is the caller's.
func TestResendCarriesTheWrite(t *testing.T) {
	req := &partitionpb.ProduceRequest{Topic: "orders", Partition: 3, Records: []*partitionpb.Record{{Value: []byte("v")}},
		ProducerId: 7, ProducerEpoch: 2, BaseSequence: 9, RequestId: 11, Follows: true, WaitMs: 100, TopicIncarnation: 13}
	fields := req.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); !req.ProtoReflect().Has(fd) {
			t.Fatalf("field %s is not set here: set it, so that the re-send is seen to carry it, or not", fd.Name())
		}
	}
	got := resend(req, false)
	want := proto.Clone(req).(*partitionpb.ProduceRequest)
	want.RequestId, want.WaitMs, want.Follows = 0, 0, false
	if !proto.Equal(got, want) {
		t.Fatalf("re-send %v, want %v", got, want)
	}
}

// gzipBatch is a batch of records of the given values, gzip-compressed.
func gzipBatch(t *testing.T, values ...[]byte) []byte {
	t.Helper()
	recs := make([]*partitionpb.Record, len(values))
	for i, v := range values {
		recs[i] = &partitionpb.Record{Offset: int64(i), Value: v, TimestampMs: 1}
	}
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(appendBatch(nil, recs)); err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	if _, err := zw.Write(rb.Records); err != nil || zw.Close() != nil {
		t.Fatal(err)
	}
	rb.Attributes, rb.Records = 1, z.Bytes()
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[batchLengthAt:], uint32(len(b)-12))
	return reCRC(b)
}

// TestDecodesAtOnceShareTheRoom: produce requests decoding on several connections at the
// same moment take the queued bytes' room one after the other. What their records hold
// beyond their frames never passes it (twice the limit), and those it does not fit are
// refused REQUEST_TIMED_OUT with nothing taken. Before, each read the room as its decode
// began and took what it decoded to once done: requests that began together each found
// the whole room, and together held several times it.
func TestDecodesAtOnceShareTheRoom(t *testing.T) {
	const limit, requests = 1 << 20, 8
	s := &Server{limits: gateway.Limits{}.WithDefaults(), opts: Options{MaxFrameBytes: DefaultMaxFrameBytes},
		queued: membudget.New(limit, membudget.Metrics{})}
	value := bytes.Repeat([]byte{'x'}, 200_000)
	raw := gzipBatch(t, value, value, value) // ~600 KB decoded from a frame of ~2 KB
	p := coordination.Partition{Topic: "t", Partition: 0}

	// Every decode reaches its take before any takes, as decodes on several connections
	// at the same moment may, whatever the scheduler does.
	var decoded sync.WaitGroup
	decoded.Add(requests)
	s.testHookDecoded = func() { decoded.Done(); decoded.Wait() }
	start := make(chan struct{})
	var wg sync.WaitGroup
	calls := make([]*produceCall, requests)
	errs := make([]*batchError, requests)
	for i := range calls {
		if err := s.queued.Acquire(context.Background(), int64(len(raw))); err != nil { // its frame, as serveConn
			t.Fatal(err)
		}
		calls[i] = &produceCall{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, _, errs[i] = s.decodePartition(calls[i], p, raw, len(raw), 0)
		}()
	}
	close(start)
	wg.Wait()

	written, extra := 0, 0
	for i, err := range errs {
		switch {
		case err == nil:
			written++
			extra += calls[i].extra
			if calls[i].extra < 3*len(value)-len(raw) {
				t.Errorf("request %d decoded to %d bytes beyond its frame, want at least %d", i, calls[i].extra, 3*len(value)-len(raw))
			}
		case err.code != kerr.RequestTimedOut.Code || calls[i].extra != 0:
			t.Errorf("request %d: %v, %d bytes taken; want REQUEST_TIMED_OUT and none", i, err, calls[i].extra)
		}
	}
	held := s.queued.Held()
	if want := int64(requests*len(raw) + extra); held != want {
		t.Errorf("the queued bytes hold %d, want the frames and what the written requests decoded to beyond them, %d", held, want)
	}
	if written == 0 || held > 2*limit {
		t.Fatalf("%d of %d requests decoded at once, holding %d bytes: want at least one, and at most twice the limit, %d", written, requests, held, 2*limit)
	}
}
