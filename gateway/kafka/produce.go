package kafka

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
)

// produceTimeout bounds a produce request when the client asks for less than a second
// or more than a minute.
const (
	minProduceTimeout = time.Second
	maxProduceTimeout = time.Minute
)

// A produce request is decoded (decodeProduce) and written (writeProduce), partitions
// concurrently, and answered once all are committed: acks=1 and acks=all both mean our
// only ack, after the segment is in the object store and its index entry in etcd. acks=0
// gets no response, as in Kafka, but is written all the same before the next request of
// the connection is read.

// produceCall is a produce request decoded and checked, ready to be written.
type produceCall struct {
	resp    *kmsg.ProduceResponse
	timeout time.Duration
	jobs    []*produceJob
	extra   int // what its decoded records hold beyond its frame, taken from the queued bytes
}

// produceJob is what one request writes to one partition.
type produceJob struct {
	p        coordination.Partition
	requests []*partitionpb.ProduceRequest
	out      *kmsg.ProduceResponseTopicPartition
	// prev is the connection's previous job to the same partition if it was still
	// unanswered when this one was admitted (pipeline.admit); this job's first batch is
	// then sent as following it (partitionpb.ProduceRequest.Follows). done is closed once
	// this job is answered (nil: nobody waits for it).
	prev *produceJob
	done chan struct{}
	// producer and epoch are the job's producer's, kept by admit for the jobs after it.
	producer int64
	epoch    int32
}

// idempotent reports whether the job is an idempotent producer's: its partition checks
// the batches' sequence numbers, so it can refuse one that arrives before the batch ahead
// of it.
func (j *produceJob) idempotent() bool { return j.requests[0].ProducerId > 0 }

// decodedPerFrame bounds what a request's records hold once decoded (their decompressed
// bytes and recordOverhead each), in frame limits: a full frame of 1 KiB records decodes
// to 1.13 of it, one of empty records would have to about 20, a compressed one to any size.
const decodedPerFrame = 2

// decodeProduce decodes every partition's batches, one partition after the other, within
// one budget for the whole request of what its decoded records hold in memory: at most
// decodedPerFrame frame limits, and at most its frame and the room the listener's queued
// bytes have, which decoded records may take past their limit up to twice it (frames
// wait to be read meanwhile). What they hold beyond the frame is taken from the queued
// bytes (pc.extra) as each partition is decoded, until the request is answered: a
// compressed frame of a few kilobytes, which may decode to megabytes, counts as what it
// decodes to. A partition that cannot be written gets its error code in the response and
// no job: one whose records would go past the room, as it was when it began or once it
// was decoded (requests decoding on other connections take it too), is
// REQUEST_TIMED_OUT, nothing written (the client retries once requests before it are
// answered), one past the request's own bound MESSAGE_TOO_LARGE.
func (s *Server) decodeProduce(ctx context.Context, req *request, r *kmsg.ProduceRequest, frame int) *produceCall {
	pc := &produceCall{resp: r.ResponseKind().(*kmsg.ProduceResponse),
		timeout: min(max(time.Duration(r.TimeoutMillis)*time.Millisecond, minProduceTimeout), maxProduceTimeout)}
	req.noResponse = r.Acks == 0
	decoded := 0
	for _, t := range r.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = t.Topic
		rt.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(t.Partitions))
		spec, specErr := s.liveTopic(ctx, t.Topic)
		for i, p := range t.Partitions {
			rp := &rt.Partitions[i]
			*rp = kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = p.Partition, -1, -1, -1
			switch {
			case r.TransactionID != nil:
				rp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
				rp.ErrorMessage = strp("transactions are not supported; use an idempotent producer")
				continue
			case r.Acks < -1 || r.Acks > 1:
				rp.ErrorCode = kerr.InvalidRequiredAcks.Code // as Kafka: acks are -1 (all), 0 or 1
				continue
			case specErr != nil:
				rp.ErrorCode = codeOf(specErr)
				continue
			case p.Partition < 0 || p.Partition >= spec.Partitions:
				rp.ErrorCode = errUnknownTopicOrPartition
				continue
			}
			part := coordination.Partition{Topic: t.Topic, Partition: p.Partition}
			requests, used, err := s.decodePartition(pc, part, p.Records, frame, decoded)
			if err != nil {
				rp.ErrorCode, rp.ErrorMessage = err.code, strp(err.msg)
				continue
			}
			for _, w := range requests {
				w.TopicIncarnation = spec.Incarnation
			}
			decoded += used
			pc.jobs = append(pc.jobs, &produceJob{p: part, requests: requests, out: rp})
		}
		pc.resp.Topics = append(pc.resp.Topics, rt)
	}
	// A compressed batch is let go while the request is served: its records are
	// decompressed copies (an uncompressed one is its partition's, readProduce).
	for i := range r.Topics {
		for j := range r.Topics[i].Partitions {
			r.Topics[i].Partitions[j].Records = nil
		}
	}
	return pc
}

// errNoRoom is a partition of a produce refused for the queued bytes' room.
var errNoRoom = &batchError{code: kerr.RequestTimedOut.Code, memory: true,
	msg: "the agent's Kafka requests hold all the memory they may (--kafka-max-queued-bytes): nothing was written; retry"}

// decodePartition decodes a partition's records of pc, a request of frame bytes whose
// partitions before it decoded to decoded bytes, within the request's bound and the room
// of the queued bytes, and takes what the request's records then hold beyond its frame
// from the queued bytes (pc.extra). The room bounds what the partition sets out to
// decode; what it decoded to is taken only if the room is still there once it is done,
// in one step with the check, since requests on other connections decode meanwhile.
func (s *Server) decodePartition(pc *produceCall, part coordination.Partition, raw []byte, frame, decoded int) (_ []*partitionpb.ProduceRequest, used int, _ *batchError) {
	// What the request's records may hold once this partition is decoded: the request's
	// own bound, or what it holds of the queued bytes (its frame, or what its partitions
	// decoded to beyond it: frame + pc.extra) and the room.
	held := max(frame, decoded)
	limit, roomBound := decodedPerFrame*s.opts.MaxFrameBytes, false
	if room := s.queued.Room(int64(held), s.queued.Limit()); room < int64(limit-held) {
		limit, roomBound = held+int(room), true
	}
	requests, used, err := s.writesOf(part, raw, limit-decoded)
	if s.testHookDecoded != nil {
		s.testHookDecoded()
	}
	switch {
	case err != nil && err.memory && roomBound:
		return nil, 0, errNoRoom
	case err != nil:
		return nil, 0, err
	}
	extra := max(0, decoded+used-frame) - pc.extra
	if !s.queued.TakeWithin(int64(held), s.queued.Limit(), int64(extra)) {
		return nil, 0, errNoRoom
	}
	pc.extra += extra
	return requests, used, nil
}

// refused reports whether a partition of the request was answered an error.
func (pc *produceCall) refused() bool {
	for _, t := range pc.resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != errNone {
				return true
			}
		}
	}
	return false
}

// idempotent reports whether every partition the request writes is an idempotent
// producer's (and there is at least one): such a request may be served alongside the
// connection's other produce requests (pipeline.go).
func (pc *produceCall) idempotent() bool {
	for _, j := range pc.jobs {
		if !j.idempotent() {
			return false
		}
	}
	return len(pc.jobs) > 0
}

// writeProduce writes the jobs, partitions concurrently, and returns the response once
// every partition answered.
func (s *Server) writeProduce(ctx context.Context, pc *produceCall) kmsg.Response {
	ctx, cancel := context.WithTimeout(ctx, pc.timeout)
	defer cancel()
	c, ok := s.client()
	var wg sync.WaitGroup
	for _, j := range pc.jobs {
		if !ok {
			j.out.ErrorCode = kerr.NotLeaderForPartition.Code
			j.finish()
			continue
		}
		wg.Go(func() { writeJob(ctx, c, j) })
	}
	wg.Wait()
	return pc.resp
}

// liveTopic returns a topic from the mirror or, for one created a moment ago, etcd.
func (s *Server) liveTopic(ctx context.Context, name string) (coordination.TopicSpec, error) {
	if err := coordination.ValidateTopicName(name); err != nil {
		return coordination.TopicSpec{}, coordination.ErrTopicNotFound
	}
	if spec, ok := s.mirror.Topic(name); ok {
		return spec, nil
	}
	return s.coord.Topic(ctx, name)
}

// writesOf decodes a partition's batches into the writes to send its partition: all the
// records in one write, or for an idempotent producer one write per batch (each carries
// its own sequence numbers). used is what its records hold in memory (batchLimits.memory),
// at most budget.
func (s *Server) writesOf(p coordination.Partition, raw []byte, budget int) (_ []*partitionpb.ProduceRequest, used int, _ *batchError) {
	batches, used, err := decodeBatches(raw, batchLimits{payload: s.limits.MaxBatchBytes, memory: budget,
		records: s.limits.MaxBatchRecords, record: s.limits.MaxRecordBytes})
	if err != nil {
		if be, ok := err.(*batchError); ok {
			return nil, 0, be
		}
		return nil, 0, &batchError{code: kerr.CorruptMessage.Code, msg: err.Error()}
	}
	idempotent := batches[0].producerID > 0
	var writes []*partitionpb.ProduceRequest
	for _, b := range batches {
		switch {
		case (b.producerID > 0) != idempotent:
			return nil, 0, &batchError{code: kerr.InvalidRecord.Code, msg: "idempotent and other batches in one partition of a request"}
		case idempotent && len(batches) > 1:
			// As Kafka since produce v3: the answer holds one outcome per partition, and
			// a batch refused (or a retry's duplicate) would stand for the ones after it.
			return nil, 0, &batchError{code: kerr.InvalidRecord.Code, msg: "an idempotent producer's partition takes one record batch per request"}
		case !idempotent && len(writes) == 1:
			writes[0].Records = append(writes[0].Records, b.records...)
		case !idempotent:
			writes = append(writes, &partitionpb.ProduceRequest{Topic: p.Topic, Partition: p.Partition, Records: b.records})
		default:
			writes = append(writes, &partitionpb.ProduceRequest{Topic: p.Topic, Partition: p.Partition, Records: b.records,
				ProducerId: b.producerID, ProducerEpoch: int32(b.producerEpoch), BaseSequence: b.firstSequence})
		}
	}
	return writes, used, nil
}

// partitionWriter sends a write to its partition: actors.Client.
type partitionWriter interface {
	ProduceRequest(ctx context.Context, req *partitionpb.ProduceRequest) (*partitionpb.ProduceResponse, error)
}

// writeJob sends a partition's writes in order and answers with the first one's base
// offset.
//
// A job sent alongside the one before it (prev) may reach the partition first, since
// every write goes to its partition by a call of its own (and a busy agent runs those
// calls in no particular order); its first batch is sent as following prev, so that the
// partition refuses it as out of order rather than take it as the start of a producer
// it does not know. It is sent again, still following, after a short wait that doubles
// while prev is unanswered (prev most likely reached the partition meanwhile: waiting
// for its answer would wait for its commit, and put this batch in the next segment).
// Once prev is answered, it is sent again if prev was written; if prev was not, the batch
// is now a gap and the client is told (it sends the batches again from the first it has
// not had acked). An out-of-order refusal with nothing ahead of it is the producer's own
// gap.
func writeJob(ctx context.Context, c partitionWriter, j *produceJob) {
	defer j.finish()
	rp, prev := j.out, j.prev
	wait, busy := reorderWait, busyWait
	for i := 0; i < len(j.requests); i++ {
		req := j.requests[i]
		resp, err := c.ProduceRequest(ctx, req)
		if err != nil {
			rp.ErrorCode, rp.ErrorMessage = codeOf(err), strp(err.Error())
			return
		}
		switch resp.Code {
		case partitionpb.Code_CODE_OK:
		case partitionpb.Code_CODE_DUPLICATE_SEQUENCE:
			rp.ErrorCode = kerr.DuplicateSequenceNumber.Code // written before; clients take it as success
			return
		case partitionpb.Code_CODE_RESOURCE_EXHAUSTED:
			// The partition refused the batch before taking it: its agent's pending
			// budget is spent (or the partition is starting). A Kafka client knows no
			// such answer but a timeout, after which it backs off and sends the
			// batches behind this one again, out of order; the listener waits
			// instead, within the request's timeout, its frame's queued bytes holding
			// its connection's next requests back (docs/BENCHMARKS.md, item 35).
			metricBusyWaits.Inc()
			t := time.NewTimer(busy)
			select {
			case <-t.C:
				busy = min(2*busy, maxBusyWait)
				// The same id: an attempt of it the client sent after a timeout may
				// still be in the partition's queue, and be written; a re-send by id is
				// answered with its outcome, not written again. A refusal leaves no
				// trace, so the id is as new to a partition that refused every attempt.
				j.requests[i] = resend(req, req.Follows)
				j.requests[i].RequestId = req.RequestId
				i--
				continue
			case <-ctx.Done():
				t.Stop()
				rp.ErrorCode, rp.ErrorMessage = partitionCode(resp.Code), strp(resp.Message)
				return
			}
		case partitionpb.Code_CODE_OUT_OF_ORDER_SEQUENCE:
			if prev != nil {
				metricReordered.Inc()
				t := time.NewTimer(wait)
				select {
				case <-t.C:
					wait = min(2*wait, maxReorderWait)
					j.requests[i] = resend(req, true)
				case <-prev.done:
					t.Stop()
					if !prev.written() {
						rp.ErrorCode, rp.ErrorMessage = kerr.OutOfOrderSequenceNumber.Code, strp("the batch before it was not written")
						return
					}
					j.requests[i], prev = resend(req, false), nil
				case <-ctx.Done():
					t.Stop()
					rp.ErrorCode, rp.ErrorMessage = codeOf(ctx.Err()), strp(ctx.Err().Error())
					return
				}
				i--
				continue
			}
			fallthrough
		default:
			rp.ErrorCode, rp.ErrorMessage = partitionCode(resp.Code), strp(resp.Message)
			return
		}
		if i == 0 {
			rp.BaseOffset = resp.BaseOffset
		}
		prev = nil // the partition took this job's first batch after the one before it
	}
}

// reorderWait and maxReorderWait bound the wait before a batch that reached its partition
// ahead of the one before it is sent again; busyWait and maxBusyWait, before one its
// partition refused for backpressure is. The pending budget frees as segments commit,
// tens of milliseconds apart under load.
const (
	reorderWait    = time.Millisecond
	maxReorderWait = 16 * time.Millisecond
	busyWait       = 2 * time.Millisecond
	maxBusyWait    = 64 * time.Millisecond
)

// resend is req as a new request: with a new id, since the partition answers a repeated
// id with its first answer (its refusal as out of order, were an attempt of it still
// queued there), and a new message, since an attempt that timed out may still hold the
// old one. follows: the batch before it is still unanswered.
func resend(req *partitionpb.ProduceRequest, follows bool) *partitionpb.ProduceRequest {
	return &partitionpb.ProduceRequest{Topic: req.Topic, Partition: req.Partition, Records: req.Records,
		ProducerId: req.ProducerId, ProducerEpoch: req.ProducerEpoch, BaseSequence: req.BaseSequence, Follows: follows,
		TopicIncarnation: req.TopicIncarnation}
}

// finish closes done and drops what the connection need not keep until the job lands:
// its records and the jobs before it.
func (j *produceJob) finish() {
	j.prev, j.requests = nil, nil
	if j.done != nil {
		close(j.done)
	}
}

// written reports, once the job is answered, whether its records are in the log.
func (j *produceJob) written() bool {
	return j.out.ErrorCode == errNone || j.out.ErrorCode == kerr.DuplicateSequenceNumber.Code
}
