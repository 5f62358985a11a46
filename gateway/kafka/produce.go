package kafka

import (
	"context"
	"fmt"
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

// produce writes each partition's batches, partitions concurrently, and answers once all
// are committed: acks=1 and acks=all both mean our only ack, after the segment is in the
// object store and its index entry in etcd. acks=0 gets no response, as in Kafka, but is
// written all the same before the next request of the connection is read.
func (s *Server) produce(ctx context.Context, req *request, r *kmsg.ProduceRequest) kmsg.Response {
	return s.writeProduce(ctx, s.decodeProduce(ctx, req, r))
}

// produceCall is a produce request decoded and checked, ready to be written.
type produceCall struct {
	resp    *kmsg.ProduceResponse
	timeout time.Duration
	jobs    []*produceJob
}

// produceJob is what one request writes to one partition.
type produceJob struct {
	p        coordination.Partition
	requests []*partitionpb.ProduceRequest
	out      *kmsg.ProduceResponseTopicPartition
	// prev is the connection's previous job to the same partition when it was still in
	// flight as this one was admitted (pipeline.admit). done is closed once this job is
	// answered (nil: nobody waits for it).
	prev *produceJob
	done chan struct{}
	key  producerKey
	// strict: this job is sent only once prev is answered, and only if prev was written.
	// Set while no batch of the producer (id and epoch) to the partition is known to be
	// written on this connection: the partition may not know the producer yet, and takes
	// any sequence number as the start of one it does not know.
	strict bool
}

// idempotent reports whether the job is an idempotent producer's: its partition checks
// the batches' sequence numbers, so it can refuse one that arrives before the batch ahead
// of it.
func (j *produceJob) idempotent() bool { return j.requests[0].ProducerId > 0 }

// decodeProduce decodes every partition's batches, one partition after the other, within
// one budget of decompressed bytes for the whole request (the frame limit): what a request
// holds in memory is bounded whatever its compression. A partition that cannot be written
// gets its error code in the response and no job.
func (s *Server) decodeProduce(ctx context.Context, req *request, r *kmsg.ProduceRequest) *produceCall {
	pc := &produceCall{resp: r.ResponseKind().(*kmsg.ProduceResponse),
		timeout: min(max(time.Duration(r.TimeoutMillis)*time.Millisecond, minProduceTimeout), maxProduceTimeout)}
	req.noResponse = r.Acks == 0
	budget := s.opts.MaxFrameBytes
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
			case specErr != nil:
				rp.ErrorCode = codeOf(specErr)
				continue
			case p.Partition < 0 || p.Partition >= spec.Partitions:
				rp.ErrorCode = errUnknownTopicOrPartition
				continue
			}
			part := coordination.Partition{Topic: t.Topic, Partition: p.Partition}
			requests, used, err := s.writesOf(part, p.Records, budget)
			if err != nil {
				rp.ErrorCode, rp.ErrorMessage = err.code, strp(err.msg)
				continue
			}
			budget -= used
			pc.jobs = append(pc.jobs, &produceJob{p: part, requests: requests, out: rp})
		}
		pc.resp.Topics = append(pc.resp.Topics, rt)
	}
	return pc
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
			if j.done != nil {
				close(j.done)
			}
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
// its own sequence numbers). used is the decompressed bytes, at most budget.
func (s *Server) writesOf(p coordination.Partition, raw []byte, budget int) (_ []*partitionpb.ProduceRequest, used int, _ *batchError) {
	batches, err := decodeBatches(raw, min(s.limits.MaxBatchBytes, budget), s.limits.MaxRecordBytes)
	if err != nil {
		if be, ok := err.(*batchError); ok {
			return nil, 0, be
		}
		return nil, 0, &batchError{code: kerr.CorruptMessage.Code, msg: err.Error()}
	}
	idempotent := batches[0].producerID >= 0
	records := 0
	var writes []*partitionpb.ProduceRequest
	for _, b := range batches {
		used += b.bytes
		records += len(b.records)
		switch {
		case (b.producerID >= 0) != idempotent:
			return nil, 0, &batchError{code: kerr.InvalidRecord.Code, msg: "idempotent and other batches in one partition of a request"}
		case !idempotent && len(writes) == 1:
			writes[0].Records = append(writes[0].Records, b.records...)
		case !idempotent:
			writes = append(writes, &partitionpb.ProduceRequest{Topic: p.Topic, Partition: p.Partition, Records: b.records})
		default:
			writes = append(writes, &partitionpb.ProduceRequest{Topic: p.Topic, Partition: p.Partition, Records: b.records,
				ProducerId: b.producerID, ProducerEpoch: int32(b.producerEpoch), BaseSequence: b.firstSequence})
		}
	}
	if records > s.limits.MaxBatchRecords {
		return nil, 0, &batchError{code: kerr.MessageTooLarge.Code,
			msg: fmt.Sprintf("%d records for one partition in one request, at most %d", records, s.limits.MaxBatchRecords)}
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
// every write goes to its partition by a call of its own. Where the partition knows the
// producer it refuses it as out of order, and the job is sent again once prev is
// answered, with a new request id (the partition answers a repeated id with its first
// answer); an out-of-order refusal after that is the producer's own gap, and the client
// is told. Where the partition may not know the producer (strict), the job waits for prev
// and is not sent at all unless prev was written: the partition would take it as the
// producer's start, and the batches before it as duplicates.
func writeJob(ctx context.Context, c partitionWriter, j *produceJob) {
	if j.done != nil {
		defer close(j.done)
	}
	rp, prev := j.out, j.prev
	// What the connection keeps of the job until it lands is its answer: neither the
	// records nor the jobs before it.
	defer func() { j.prev, j.requests = nil, nil }()
	if j.strict {
		select {
		case <-prev.done:
		case <-ctx.Done():
			rp.ErrorCode, rp.ErrorMessage = codeOf(ctx.Err()), strp(ctx.Err().Error())
			return
		}
		if !prev.written() {
			rp.ErrorCode, rp.ErrorMessage = kerr.OutOfOrderSequenceNumber.Code, strp("the batch before it was not written")
			return
		}
		prev = nil
	}
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
		case partitionpb.Code_CODE_OUT_OF_ORDER_SEQUENCE:
			if prev != nil {
				select {
				case <-prev.done:
				case <-ctx.Done(): // the next attempt says so
				}
				prev, req.RequestId = nil, 0
				metricReordered.Inc()
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

// written reports, once the job is answered, whether its records are in the log.
func (j *produceJob) written() bool {
	return j.out.ErrorCode == errNone || j.out.ErrorCode == kerr.DuplicateSequenceNumber.Code
}
