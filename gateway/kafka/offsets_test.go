package kafka

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/coordination"
)

// An OffsetFetch before v2, whose answer has no error of its own on the wire, that fails
// carries its error in each partition asked for. Before, the error went in the top-level
// field, which is not encoded before v2, and the client read no offsets and no error.
func TestAFailedOffsetFetchBeforeV2SaysSoInEachPartition(t *testing.T) {
	c, err := coordination.New(nil, coordination.Options{Root: "/kafka-unit"})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{coord: c}
	for _, version := range []int16{0, 1, 2} {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version, req.Group = version, "" // refused before etcd is asked: INVALID_GROUP_ID
		req.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0, 1}}}
		resp := s.offsetFetch(context.Background(), req).(*kmsg.OffsetFetchResponse)
		var wire kmsg.OffsetFetchResponse
		wire.Version = version
		if err := wire.ReadFrom(resp.AppendTo(nil)); err != nil {
			t.Fatal(err)
		}
		codes := 0
		for _, tp := range wire.Topics {
			for _, p := range tp.Partitions {
				if p.ErrorCode == kerr.InvalidGroupID.Code && p.Offset == -1 {
					codes++
				}
			}
		}
		if version < 2 && codes != 2 || version >= 2 && wire.ErrorCode != kerr.InvalidGroupID.Code {
			t.Errorf("v%d: error %d, %d of 2 partitions carry INVALID_GROUP_ID", version, wire.ErrorCode, codes)
		}
	}
}
