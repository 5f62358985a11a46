package actors

import (
	"errors"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore"
)

// toRecords converts wire records into log records. Offsets are left for the writer.
func toRecords(in []*partitionpb.Record) []segmentstore.Record {
	out := make([]segmentstore.Record, len(in))
	for i, r := range in {
		out[i] = segmentstore.Record{Timestamp: r.GetTimestampMs(), Key: r.Key, Value: r.Value}
		if len(r.Headers) > 0 {
			out[i].Headers = make([]segmentstore.RecordHeader, len(r.Headers))
			for j, h := range r.Headers {
				out[i].Headers[j] = segmentstore.RecordHeader{Key: h.GetKey(), Value: h.Value}
			}
		}
	}
	return out
}

// fromRecords converts log records to wire records.
func fromRecords(in []segmentstore.Record) []*partitionpb.Record {
	// One allocation for all the records rather than one each: a catch-up read converts
	// a thousand records per fetch, and the count of objects is what the GC pays for.
	out, recs := make([]*partitionpb.Record, len(in)), make([]partitionpb.Record, len(in))
	for i := range in {
		r, pr := &in[i], &recs[i]
		pr.Offset, pr.TimestampMs, pr.Key, pr.Value = r.Offset, r.Timestamp, r.Key, r.Value
		for _, h := range r.Headers {
			pr.Headers = append(pr.Headers, &partitionpb.Header{Key: h.Key, Value: h.Value})
		}
		out[i] = pr
	}
	return out
}

// codeOf maps an error to the code clients act on.
func codeOf(err error) partitionpb.Code {
	switch {
	case err == nil:
		return partitionpb.Code_CODE_OK
	case errors.Is(err, ErrBackpressure):
		return partitionpb.Code_CODE_RESOURCE_EXHAUSTED
	case errors.Is(err, ErrInvalidArgument), errors.Is(err, coordination.ErrInvalidArgument):
		return partitionpb.Code_CODE_INVALID_ARGUMENT
	case errors.Is(err, coordination.ErrOffsetOutOfRange):
		return partitionpb.Code_CODE_OUT_OF_RANGE
	case errors.Is(err, coordination.ErrTopicNotFound), errors.Is(err, coordination.ErrPartitionNotFound):
		return partitionpb.Code_CODE_NOT_FOUND
	case errors.Is(err, ErrDuplicateSequence):
		return partitionpb.Code_CODE_DUPLICATE_SEQUENCE
	case errors.Is(err, ErrOutOfOrderSequence):
		return partitionpb.Code_CODE_OUT_OF_ORDER_SEQUENCE
	case errors.Is(err, ErrProducerFenced):
		return partitionpb.Code_CODE_PRODUCER_FENCED
	case errors.Is(err, segmentstore.ErrCorrupt):
		return partitionpb.Code_CODE_DATA_LOSS
	default:
		return partitionpb.Code_CODE_UNAVAILABLE
	}
}
