package streamhousepb

import (
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// NotAcked is the offset of a record's ack in a partly written Produce's details: its
// partition did not ack it. As for any failed produce, whether it was written depends on
// the failure: a refusal (RESOURCE_EXHAUSTED, INVALID_ARGUMENT) wrote nothing, an
// UNAVAILABLE or a deadline may have.
const NotAcked = -1

// MaxAckDetailBytes bounds the acks a partly written Produce's status carries: gRPC sends
// a status's details in the call's trailers, whose size clients bound (8 KiB in grpc-java
// and gRPC C-core; a server that passes it resets the call, losing its status). An ack
// encodes in ~10 bytes (~15 not acked), so 4 KiB holds a few hundred records' acks
// (TestPartlyWrittenLargeProduceKeepsItsStatus: 200 fit, 10,000 do not).
const MaxAckDetailBytes = 4096

// PartlyWritten is the status of a Produce whose records were sent to several
// partitions and failed in some after others wrote theirs: st, with a ProduceResponse
// detail whose acks[i] is where records[i] was written, or, offset NotAcked, the
// partition that did not ack it, when they fit in MaxAckDetailBytes. Records acked are
// in the log: sending them again would write them twice.
func PartlyWritten(st *status.Status, acks []*RecordAck) error {
	detail := &ProduceResponse{Acks: acks}
	if proto.Size(detail) > MaxAckDetailBytes {
		return st.Err()
	}
	if d, err := st.WithDetails(detail); err == nil {
		st = d
	}
	return st.Err()
}

// WrittenAcks reads the acks of a partly written Produce from its error (PartlyWritten);
// ok is false for an error that carries none: then no record of the request was acked,
// or the acks were too many to carry (the message names the partitions that wrote
// theirs).
func WrittenAcks(err error) (acks []*RecordAck, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus {
		return nil, false
	}
	for _, d := range st.Details() {
		if r, isResp := d.(*ProduceResponse); isResp {
			return r.Acks, true
		}
	}
	return nil, false
}
