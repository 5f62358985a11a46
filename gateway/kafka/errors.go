package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/streamhouse/streamhouse/actors"
	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
)

// codeOf maps an error of coordination or actors to the Kafka error code a client acts
// on: retriable codes for what a retry can fix (a partition moving, a store or etcd outage,
// backpressure), fatal ones for bad requests.
func codeOf(err error) int16 {
	switch {
	case err == nil:
		return errNone
	case errors.Is(err, coordination.ErrTopicNotFound), errors.Is(err, coordination.ErrPartitionNotFound):
		return errUnknownTopicOrPartition
	case errors.Is(err, coordination.ErrTopicExists):
		return kerr.TopicAlreadyExists.Code
	case errors.Is(err, coordination.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	case errors.Is(err, coordination.ErrInvalidArgument), errors.Is(err, actors.ErrInvalidArgument):
		return kerr.InvalidRequest.Code
	case errors.Is(err, actors.ErrUnavailable):
		// The partition is moving or its owner cannot reach etcd or the store: the client
		// refreshes its metadata and retries, which is what helps.
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, actors.ErrBackpressure):
		// Nothing was written; the client backs off and retries (Kafka has no code for
		// "too much in flight" other than a timeout, which a client also retries).
		return kerr.RequestTimedOut.Code
	case errors.Is(err, context.DeadlineExceeded):
		return kerr.RequestTimedOut.Code
	case errors.Is(err, context.Canceled):
		return kerr.NotLeaderForPartition.Code // this agent is stopping; another will serve
	}
	return kerr.UnknownServerError.Code
}

// partitionCode maps a partition actor's answer code.
func partitionCode(c partitionpb.Code) int16 {
	switch c {
	case partitionpb.Code_CODE_OK:
		return errNone
	case partitionpb.Code_CODE_INVALID_ARGUMENT:
		return kerr.InvalidRecord.Code
	case partitionpb.Code_CODE_OUT_OF_RANGE:
		return kerr.OffsetOutOfRange.Code
	case partitionpb.Code_CODE_RESOURCE_EXHAUSTED:
		return kerr.RequestTimedOut.Code
	case partitionpb.Code_CODE_NOT_FOUND:
		return errUnknownTopicOrPartition
	case partitionpb.Code_CODE_OUT_OF_ORDER_SEQUENCE:
		return kerr.OutOfOrderSequenceNumber.Code
	case partitionpb.Code_CODE_PRODUCER_FENCED:
		return kerr.InvalidProducerEpoch.Code
	case partitionpb.Code_CODE_DATA_LOSS:
		return kerr.CorruptMessage.Code // the stored batch failed its checks
	}
	return kerr.NotLeaderForPartition.Code
}

func strp(s string) *string { return &s }

// coordinationInvalid reports a request coordination refused as invalid.
func coordinationInvalid(err error) bool { return errors.Is(err, coordination.ErrInvalidArgument) }
