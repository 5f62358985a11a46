package kafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/actors"
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
// written all the same before the next request of the connection is read. Batches are
// decoded first, one partition after the other, within one budget of decompressed bytes
// for the whole request (the frame limit): what a request holds in memory is bounded
// whatever its compression.
func (s *Server) produce(ctx context.Context, req *request, r *kmsg.ProduceRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ProduceResponse)
	req.noResponse = r.Acks == 0
	timeout := min(max(time.Duration(r.TimeoutMillis)*time.Millisecond, minProduceTimeout), maxProduceTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type job struct {
		p        coordination.Partition
		requests []*partitionpb.ProduceRequest
		out      *kmsg.ProduceResponseTopicPartition
	}
	var jobs []job
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
			jobs = append(jobs, job{part, requests, rp})
		}
		resp.Topics = append(resp.Topics, rt)
	}
	c, ok := s.client()
	var wg sync.WaitGroup
	for _, j := range jobs {
		if !ok {
			j.out.ErrorCode = kerr.NotLeaderForPartition.Code
			continue
		}
		wg.Go(func() { s.write(ctx, c, j.requests, j.out) })
	}
	wg.Wait()
	return resp
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

// write sends a partition's writes in order and answers with the first one's base offset.
func (s *Server) write(ctx context.Context, c *actors.Client, writes []*partitionpb.ProduceRequest, rp *kmsg.ProduceResponseTopicPartition) {
	for i, req := range writes {
		resp, err := c.ProduceRequest(ctx, req)
		if err != nil {
			rp.ErrorCode, rp.ErrorMessage = codeOf(err), strp(err.Error())
			return
		}
		if resp.Code == partitionpb.Code_CODE_DUPLICATE_SEQUENCE {
			rp.ErrorCode = kerr.DuplicateSequenceNumber.Code // written before; clients take it as success
			return
		}
		if resp.Code != partitionpb.Code_CODE_OK {
			rp.ErrorCode, rp.ErrorMessage = partitionCode(resp.Code), strp(resp.Message)
			return
		}
		if i == 0 {
			rp.BaseOffset = resp.BaseOffset
		}
	}
}
