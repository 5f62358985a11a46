package kafka

import (
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/coordination"
)

// An OffsetFetch before v2, whose answer has no error of its own on the wire, that fails
// carries its error in each partition asked for. Before, the error went in the top-level
// field, which is not encoded before v2, and the client read no offsets and no error.
func TestAFailedOffsetFetchBeforeV2SaysSoInEachPartition(t *testing.T) {
	s := &Server{coord: etcdlessClient(t)}
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

// A topic setting of 0 over Kafka is refused as INVALID_CONFIG: a topic's 0 is its
// default, so retention.ms=0 (delete at once, to Kafka) was taken as a week and
// retention.bytes=0 as no limit, in silence.
func TestAZeroTopicSettingIsRefused(t *testing.T) {
	for _, name := range []string{configRetentionMs, configRetentionBytes, configSegmentBytes, configLingerMs, configMergeBytes} {
		zero := "0"
		spec := coordination.TopicSpec{Name: "t", Partitions: 1}
		err := applyConfigs(&spec, []kmsg.CreateTopicsRequestTopicConfig{{Name: name, Value: &zero}})
		if !errors.Is(err, errInvalidConfig) {
			t.Errorf("%s=0: %v, want an invalid config", name, err)
		}
	}
}

// A produce with acks other than -1, 0 or 1 is refused INVALID_REQUIRED_ACKS, as Kafka
// refuses it; it was taken as acks=all.
func TestAProduceWithBadAcksIsRefused(t *testing.T) {
	s := NewServer(nil, nil, nil, Options{})
	t.Cleanup(func() { _ = s.Close() })
	r := kmsg.NewPtrProduceRequest()
	r.Acks = 5
	tp := kmsg.NewProduceRequestTopic()
	tp.Topic = "not a topic name" // refused before anything is looked up
	tp.Partitions = []kmsg.ProduceRequestTopicPartition{kmsg.NewProduceRequestTopicPartition()}
	r.Topics = append(r.Topics, tp)
	pc := s.decodeProduce(context.Background(), &request{}, r, 0)
	if got := pc.resp.Topics[0].Partitions[0].ErrorCode; got != kerr.InvalidRequiredAcks.Code || len(pc.jobs) != 0 {
		t.Fatalf("acks=5: error %d, %d writes; want INVALID_REQUIRED_ACKS and none", got, len(pc.jobs))
	}
}
