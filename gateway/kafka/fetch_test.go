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
// REQUEST_TIMED_OUT it was answered before. Its high-water mark is the owner's, else the
// mirror's but never below the offset asked for; and a fetch that found nothing else
// tells its client to back off rather than fetch again at once.
func TestAPartitionRefusedForRoomIsAnsweredEmpty(t *testing.T) {
	s := &Server{mirror: etcdlessClient(t).NewMirror()} // mirrors nothing: its marks are 0
	refuse := func(offset int64, owner *partitionpb.FetchResponse) (*fetchPart, int) {
		out := kmsg.NewFetchResponseTopicPartition()
		out.HighWatermark = -1
		fp := &fetchPart{p: coordination.Partition{Topic: "t"}, offset: offset, maxBytes: 1 << 20, out: &out}
		return fp, s.answer(fp, owner, nil)
	}
	fp, n := refuse(7, &partitionpb.FetchResponse{Code: partitionpb.Code_CODE_RESOURCE_EXHAUSTED, HighWaterMark: 42, LogStartOffset: 3})
	if n != 0 || fp.out.ErrorCode != 0 || !fp.done || len(fp.records) != 0 || fp.out.HighWatermark != 42 || fp.out.LogStartOffset != 3 {
		t.Fatalf("refused with the owner's marks: %d bytes, error %d, done %v, high-water mark %d, log start %d",
			n, fp.out.ErrorCode, fp.done, fp.out.HighWatermark, fp.out.LogStartOffset)
	}
	// Refused before any read (a starting partition's full stash): no marks from the owner.
	bare, _ := refuse(7, &partitionpb.FetchResponse{Code: partitionpb.Code_CODE_RESOURCE_EXHAUSTED})
	if bare.out.ErrorCode != 0 || bare.out.HighWatermark != 7 {
		t.Fatalf("refused without marks: error %d, high-water mark %d, want 0 and the offset asked for, 7", bare.out.ErrorCode, bare.out.HighWatermark)
	}
	if !refusedOnly([]*fetchPart{fp, {}}) {
		t.Fatal("a fetch of a refused partition and an empty one: not told to back off")
	}
	if refusedOnly([]*fetchPart{fp, {records: []*partitionpb.Record{{}}}}) || refusedOnly([]*fetchPart{{}}) {
		t.Fatal("a fetch with records, or with none refused, told to back off")
	}
}

// etcdlessClient is a coordination client without etcd, for what a unit test reaches
// before any read of it (a name refused, an empty mirror).
func etcdlessClient(t *testing.T) *coordination.Client {
	t.Helper()
	c, err := coordination.New(nil, coordination.Options{Root: "/kafka-unit"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
