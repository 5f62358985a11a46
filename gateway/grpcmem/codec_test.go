package grpcmem

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// A message encoded into and arriving in pooled buffers decodes whole, in several frames,
// and a pooled buffer that held another message before leaks nothing into the next one.
func TestCodecDecodesFromPooledBuffers(t *testing.T) {
	pool := NewBufferPool()
	c := newCodec(pool, false)
	msg := func(n int, fill byte) *pb.ProduceRequest {
		req := &pb.ProduceRequest{Topic: "orders"}
		for range n {
			req.Records = append(req.Records, &pb.Record{Value: bytes.Repeat([]byte{fill}, 1024)})
		}
		return req
	}
	for _, want := range []*pb.ProduceRequest{msg(100, 'a'), msg(3, 'b'), msg(99, 'c')} {
		data, err := c.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		// Split it as the transport would hand it over: several frames.
		flat := data.Materialize()
		var frames mem.BufferSlice
		for len(flat) > 0 {
			n := min(len(flat), 16<<10)
			frames = append(frames, mem.SliceBuffer(flat[:n]))
			flat = flat[n:]
		}
		if len(data.Materialize()) != proto.Size(want) {
			t.Fatalf("encoded %d bytes, the message has %d", len(data.Materialize()), proto.Size(want))
		}
		data.Free() // the next message of this size is encoded into the same buffer
		got := &pb.ProduceRequest{}
		if err := c.Unmarshal(frames, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("decoded %d records of %q, want %d of %q", len(got.Records), got.Records[0].Value[:1], len(want.Records), want.Records[0].Value[:1])
		}
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{1})}, "not a message"); err == nil {
		t.Fatal("a non-protobuf target was accepted")
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Fatal("a non-protobuf value was encoded")
	}
}
