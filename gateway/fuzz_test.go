package gateway

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// FuzzProduceRequest feeds arbitrary bytes, as a client may send them, to the produce
// request's decoding and validation. Nothing may panic; a request is refused with
// InvalidArgument or accepted only within the limits; keyed records map to a partition
// of the topic.
func FuzzProduceRequest(f *testing.F) {
	p := int32(2)
	for _, req := range []*pb.ProduceRequest{
		{Topic: "t", Records: []*pb.Record{{Value: []byte("v")}}},
		{Topic: "t", Partition: &p, Records: []*pb.Record{{Key: []byte("k"), Value: []byte("v"), Headers: []*pb.Header{{Key: "h", Value: []byte("x")}}}}},
		{Topic: "t", Records: []*pb.Record{{Value: make([]byte, 200)}, {Offset: 3}}},
		{Topic: "t"},
	} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, int32(4))
	}
	limits := Limits{MaxRecordBytes: 100, MaxBatchBytes: 150, MaxBatchRecords: 5, MaxFetchBytes: 1 << 10}.WithDefaults()
	s := &Server{limits: limits}
	f.Fuzz(func(t *testing.T, data []byte, partitions int32) {
		var req pb.ProduceRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return // grpc answers a message that does not decode itself
		}
		if err := s.checkBatch(&req); err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("refused with %v, want InvalidArgument", err)
			}
			return
		}
		if n := len(req.Records); n == 0 || n > limits.MaxBatchRecords {
			t.Fatalf("accepted %d records", n)
		}
		total := 0
		for _, r := range req.Records {
			size := len(r.Key) + len(r.Value) + len(r.Headers)*partitionpb.HeaderOverhead
			for _, h := range r.Headers {
				size += len(h.Key) + len(h.Value)
			}
			if size > limits.MaxRecordBytes || r.Offset != 0 || r.Partition != 0 {
				t.Fatalf("accepted record %+v", r)
			}
			total += size
			if partitions > 0 && r.Key != nil {
				if got := PartitionForKey(r.Key, partitions); got < 0 || got >= partitions {
					t.Fatalf("key %q maps to partition %d of %d", r.Key, got, partitions)
				}
			}
		}
		if total > limits.MaxBatchBytes {
			t.Fatalf("accepted %d bytes", total)
		}
	})
}

// TestHeadersCountTowardTheRecordLimit: a record of many empty headers, which decodes to
// tens of bytes a header at every hop, counts partitionpb.HeaderOverhead for each and is
// refused past the record limit; one whose headers fit is taken.
func TestHeadersCountTowardTheRecordLimit(t *testing.T) {
	s := &Server{limits: Limits{MaxRecordBytes: 10 * partitionpb.HeaderOverhead}.WithDefaults()}
	record := func(headers int) *pb.ProduceRequest {
		r := &pb.Record{}
		for range headers {
			r.Headers = append(r.Headers, &pb.Header{})
		}
		return &pb.ProduceRequest{Topic: "t", Records: []*pb.Record{r}}
	}
	if err := s.checkBatch(record(10)); err != nil {
		t.Fatalf("10 empty headers at a limit of 10: %v", err)
	}
	if err := s.checkBatch(record(11)); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("11 empty headers at a limit of 10: %v, want InvalidArgument", err)
	}
}
