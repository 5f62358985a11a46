package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
)

// A partition whose owner had no room to read it from the store now is answered with no
// records and no error, as a broker answers a partition it has no room for, and is not
// read again in that fetch: Kafka has no error for it, and Java's consumer throws on the
// REQUEST_TIMED_OUT it was answered before.
func TestAPartitionRefusedForRoomIsAnsweredEmpty(t *testing.T) {
	c, err := coordination.New(nil, coordination.Options{Root: "/kafka-unit"})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{mirror: c.NewMirror()}
	out := kmsg.NewFetchResponseTopicPartition()
	out.HighWatermark = -1
	fp := &fetchPart{p: coordination.Partition{Topic: "t"}, maxBytes: 1 << 20, out: &out}
	n := s.answer(fp, &partitionpb.FetchResponse{Code: partitionpb.Code_CODE_RESOURCE_EXHAUSTED, Message: "no room"}, nil)
	if n != 0 || out.ErrorCode != 0 || !fp.done || out.HighWatermark < 0 || len(fp.records) != 0 {
		t.Fatalf("refused for room: %d bytes, error %d, done %v, high-water mark %d", n, out.ErrorCode, fp.done, out.HighWatermark)
	}
}
