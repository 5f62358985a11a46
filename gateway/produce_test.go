package gateway

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// A Produce refused by one of its partitions keeps the refusal's code (a client backs off
// on RESOURCE_EXHAUSTED as before), names the partitions its other records were written
// to, and carries every record's ack, so that the client sends again only the records
// not acked; with none written, the refusal is as it was.
func TestPartlyWrittenProduceNamesWhatWasWritten(t *testing.T) {
	refused := status.Error(codes.ResourceExhausted, "partition 2: backpressure")
	acks := []*pb.RecordAck{{Partition: 5, Offset: 7}, {Partition: 2, Offset: pb.NotAcked}, {Partition: 0, Offset: 3}, {Partition: 5, Offset: 8}}
	err := partlyWritten(refused, acks)
	err = status.FromProto(status.Convert(err).Proto()).Err() // as the client receives it
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "partitions [0 5] were written") ||
		!strings.HasPrefix(st.Message(), "partition 2: backpressure") {
		t.Fatalf("partly written: %v", err)
	}
	got, ok := pb.WrittenAcks(err)
	if !ok || !proto.Equal(&pb.ProduceResponse{Acks: got}, &pb.ProduceResponse{Acks: acks}) {
		t.Fatalf("acks in the status: %v (%v), want %v", got, ok, acks)
	}
	none := []*pb.RecordAck{{Partition: 2, Offset: pb.NotAcked}, {Partition: 2, Offset: pb.NotAcked}}
	if err := partlyWritten(refused, none); err != refused {
		t.Fatalf("nothing written: %v, want the refusal as it was", err)
	}
	if got, ok := pb.WrittenAcks(refused); ok {
		t.Fatalf("acks read from a refusal that carries none: %v", got)
	}
}

// The acks of a large request do not fit a trailer clients accept (8 KiB in grpc-java and
// gRPC C-core: past it the call is reset and its status lost): they are left out, and the
// status keeps its code and a message of bounded size naming the partitions written.
func TestPartlyWrittenLargeProduceKeepsItsStatus(t *testing.T) {
	refused := status.Error(codes.ResourceExhausted, "partition 2: backpressure")
	acks := make([]*pb.RecordAck, 10000)
	for i := range acks {
		acks[i] = &pb.RecordAck{Partition: int32(i % 1000), Offset: int64(1_000_000 + i)}
		if i%1000 == 2 {
			acks[i].Offset = pb.NotAcked
		}
	}
	err := partlyWritten(refused, acks)
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "and 967 more") {
		t.Fatalf("partly written: %v", err)
	}
	if n := proto.Size(st.Proto()); n > 8<<10/2 {
		t.Fatalf("status of %d bytes, over half of an 8 KiB trailer", n)
	}
	if got, ok := pb.WrittenAcks(err); ok {
		t.Fatalf("%d acks carried, of %d bytes", len(got), proto.Size(&pb.ProduceResponse{Acks: got}))
	}
	// Within the bound they are carried: 200 records.
	if _, ok := pb.WrittenAcks(partlyWritten(refused, acks[:200])); !ok {
		t.Fatal("the acks of 200 records are not carried")
	}
}
