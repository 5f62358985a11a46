package gateway

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// A Produce refused by one of its partitions keeps the refusal's code (a client backs off
// on RESOURCE_EXHAUSTED as before) and names the partitions its other records were
// written to, so that the client does not send those again; with none written, the
// refusal is as it was.
func TestPartlyWrittenProduceNamesWhatWasWritten(t *testing.T) {
	refused := status.Error(codes.ResourceExhausted, "partition 2: backpressure")
	acks := []*pb.RecordAck{{Partition: 5, Offset: 7}, nil, {Partition: 0, Offset: 3}, {Partition: 5, Offset: 8}}
	err := partlyWritten(refused, acks)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "partitions [0 5] were written") ||
		!strings.HasPrefix(st.Message(), "partition 2: backpressure") {
		t.Fatalf("partly written: %v", err)
	}
	if err := partlyWritten(refused, make([]*pb.RecordAck, 3)); err != refused {
		t.Fatalf("nothing written: %v, want the refusal as it was", err)
	}
}
