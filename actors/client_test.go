package actors

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
)

// An attempt carries every field of its request and how long it is waited for, and
// leaves the request as it was (an earlier attempt's message may still be on its way).
func TestAttemptCarriesTheRequestAndItsWait(t *testing.T) {
	req := &partitionpb.ProduceRequest{Topic: "orders", Partition: 3, Records: []*partitionpb.Record{{Value: []byte("v")}},
		ProducerId: 7, ProducerEpoch: 2, BaseSequence: 9, RequestId: 11, Follows: true, TopicIncarnation: 13}
	fields := req.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); fd.Name() != "wait_ms" && !req.ProtoReflect().Has(fd) {
			t.Fatalf("field %s is not set here: set it, so that the copy is seen to carry it", fd.Name())
		}
	}
	got := withWait(req, 1500*time.Millisecond)
	want := proto.Clone(req).(*partitionpb.ProduceRequest)
	want.WaitMs = 1500
	if !proto.Equal(got, want) {
		t.Fatalf("attempt %v, want %v", got, want)
	}
	if req.WaitMs != 0 {
		t.Fatalf("the request was changed: wait %d ms", req.WaitMs)
	}
	if w := withWait(req, -time.Second).WaitMs; w != 1 {
		t.Fatalf("an attempt sent past its deadline waits %d ms, want 1 (0 is no bound)", w)
	}
}
