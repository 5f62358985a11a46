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

// produce writes each partition's batches, partitions concurrently, and answers once all
// are committed: acks=1 and acks=all both mean our only ack, after the segment is in the
// object store and its index entry in etcd. acks=0 gets no response, as in Kafka, but is
// written all the same before the next request of the connection is read.
func (s *Server) produce(ctx context.Context, req *request, r *kmsg.ProduceRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ProduceResponse)
	req.noResponse = r.Acks == 0
	timeout := min(max(time.Duration(r.TimeoutMillis)*time.Millisecond, minProduceTimeout), maxProduceTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var wg sync.WaitGroup
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
			wg.Go(func() {
				s.producePartition(ctx, coordination.Partition{Topic: t.Topic, Partition: p.Partition}, p.Records, rp)
			})
		}
		resp.Topics = append(resp.Topics, rt)
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

func (s *Server) producePartition(ctx context.Context, p coordination.Partition, raw []byte, rp *kmsg.ProduceResponseTopicPartition) {
	batches, err := decodeBatches(raw, s.limits.MaxBatchBytes, s.limits.MaxRecordBytes)
	if err != nil {
		if be, ok := err.(*batchError); ok {
			rp.ErrorCode, rp.ErrorMessage = be.code, strp(be.msg)
			return
		}
		rp.ErrorCode = kerr.CorruptMessage.Code
		return
	}
	c, ok := s.client()
	if !ok {
		rp.ErrorCode = kerr.NotLeaderForPartition.Code
		return
	}
	var requests []*partitionpb.ProduceRequest
	if batches[0].producerID < 0 {
		// Not idempotent: every batch of the partition in one write.
		req := &partitionpb.ProduceRequest{Topic: p.Topic, Partition: p.Partition}
		for _, b := range batches {
			req.Records = append(req.Records, b.records...)
		}
		requests = append(requests, req)
	} else {
		for _, b := range batches {
			requests = append(requests, &partitionpb.ProduceRequest{Topic: p.Topic, Partition: p.Partition, Records: b.records,
				ProducerId: b.producerID, ProducerEpoch: int32(b.producerEpoch), BaseSequence: b.firstSequence})
		}
	}
	for i, req := range requests {
		if len(req.Records) > s.limits.MaxBatchRecords {
			rp.ErrorCode = kerr.MessageTooLarge.Code
			rp.ErrorMessage = strp("too many records in one request")
			return
		}
		if (req.ProducerId < 0) != (requests[0].ProducerId < 0) {
			rp.ErrorCode = kerr.InvalidRecord.Code
			return
		}
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
