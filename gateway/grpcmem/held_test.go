package grpcmem

import (
	"bytes"
	"context"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"

	"github.com/streamhouse/streamhouse/gateway/membudget"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// A held answer is accounted at its encoded size from its encoding until the transport
// frees its buffer (its last reference); a small one, encoded into a fresh buffer, gives
// its reservation back at once; a message no reservation holds changes nothing.
func TestHeldAnswerIsAccountedUntilItsBufferIsFreed(t *testing.T) {
	ctx := context.Background()
	c := newCodec(NewBufferPool(), false)
	reads := membudget.New(64<<20, membudget.Metrics{})
	fetch := func(n int) *pb.FetchResponse {
		out := &pb.FetchResponse{HighWaterMark: int64(n)}
		for i := range n {
			out.Records = append(out.Records, &pb.Record{Offset: int64(i), Value: bytes.Repeat([]byte{'v'}, 1024)})
		}
		return out
	}

	big := fetch(64)
	r, err := reads.Reserve(ctx, 1<<20) // the fetch's max bytes, before its read
	if err != nil {
		t.Fatal(err)
	}
	HoldUntilWritten(ctx, big, r)
	data, err := c.Marshal(big)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := reads.Held(), int64(proto.Size(big)); got != want {
		t.Fatalf("encoded: the budget holds %d bytes, the answer has %d", got, want)
	}
	data.Ref() // the transport's reference, while it writes
	data.Free()
	if reads.Held() == 0 {
		t.Fatal("the budget gave the answer back while the transport still held it")
	}
	data.Free()
	if reads.Held() != 0 {
		t.Fatalf("written: the budget still holds %d bytes", reads.Held())
	}

	small := fetch(0)
	r, err = reads.Reserve(ctx, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	HoldUntilWritten(ctx, small, r)
	if _, err := c.Marshal(small); err != nil {
		t.Fatal(err)
	}
	if reads.Held() != 0 {
		t.Fatalf("a small answer, encoded: the budget holds %d bytes", reads.Held())
	}

	// Encoded again (not held any more) and another message: nothing taken.
	for _, m := range []proto.Message{big, fetch(8)} {
		data, err := c.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if reads.Held() != 0 {
			t.Fatalf("a message no reservation holds: the budget holds %d bytes", reads.Held())
		}
		data.Free()
	}
}

// heldAnswers returns a read budget and a func that encodes, with the codec, an answer
// of 64 KiB that a reservation of 1 MiB holds, registered under ctx.
func heldAnswers(t *testing.T) (*membudget.Budget, func(ctx context.Context) mem.BufferSlice) {
	c := newCodec(NewBufferPool(), false)
	reads := membudget.New(64<<20, membudget.Metrics{})
	return reads, func(ctx context.Context) mem.BufferSlice {
		t.Helper()
		r, err := reads.Reserve(ctx, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		m := &pb.FetchResponse{Records: []*pb.Record{{Value: bytes.Repeat([]byte{'v'}, 64<<10)}}}
		HoldUntilWritten(ctx, m, r)
		data, err := c.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
}

// Answers that a connection or a reset stream had queued are dropped by gRPC without
// their buffers being freed: their reservations come back when the connection ends, or
// when the stream's handler says it ended; an answer written before that is given back
// once, and nothing added after the end is kept.
func TestHeldAnswersComeBackWhenTheirConnectionOrStreamEnds(t *testing.T) {
	reads, encode := heldAnswers(t)
	sh := statsHandler{}
	conn := sh.TagConn(context.Background(), &stats.ConnTagInfo{})
	stream, ended := HoldsOfStream(conn)
	size := int64(proto.Size(&pb.FetchResponse{Records: []*pb.Record{{Value: bytes.Repeat([]byte{'v'}, 64<<10)}}}))

	written := encode(stream)
	encode(stream) // queued, then dropped with its stream
	encode(conn)   // queued, then dropped with its connection
	if reads.Held() != 3*size {
		t.Fatalf("3 answers encoded: the budget holds %d bytes, want %d", reads.Held(), 3*size)
	}
	written.Free()
	if reads.Held() != 2*size {
		t.Fatalf("one written: the budget holds %d bytes, want %d", reads.Held(), 2*size)
	}
	ended()
	if reads.Held() != size {
		t.Fatalf("the stream ended: the budget holds %d bytes, want %d", reads.Held(), size)
	}
	if n := kept(conn); n != 1 {
		t.Fatalf("the stream ended: its connection still keeps %d answers, want its own 1", n)
	}
	sh.HandleConn(conn, &stats.ConnEnd{})
	if reads.Held() != 0 {
		t.Fatalf("the connection ended: the budget holds %d bytes", reads.Held())
	}
	late := encode(stream) // after the end: the transport's failed write frees it
	late.Free()
	if reads.Held() != 0 {
		t.Fatalf("an answer encoded after its stream ended: the budget holds %d bytes", reads.Held())
	}
}

// A call that ends without its trailers queued was reset, and an answer it queued at
// that moment is dropped unfreed: its reservation comes back when the call ends. One
// that ends after its trailers keeps its answer's until the answer is written.
func TestHeldAnswersComeBackWhenTheirCallIsReset(t *testing.T) {
	reads, answer := heldAnswers(t)
	sh := statsHandler{}
	conn := sh.TagConn(context.Background(), &stats.ConnTagInfo{})
	reset := sh.TagRPC(conn, &stats.RPCTagInfo{FullMethodName: pb.StreamHouse_Fetch_FullMethodName})
	answer(reset) // queued as the stream was reset: never freed
	sh.HandleRPC(reset, &stats.End{})
	if reads.Held() != 0 {
		t.Fatalf("a call reset with its answer queued ended: the budget holds %d bytes", reads.Held())
	}
	if n := kept(conn); n != 0 {
		t.Fatalf("a call reset and ended: its connection still keeps %d answers of it", n)
	}
	done := sh.TagRPC(conn, &stats.RPCTagInfo{FullMethodName: pb.StreamHouse_Fetch_FullMethodName})
	data := answer(done)
	sh.HandleRPC(done, &stats.OutTrailer{})
	sh.HandleRPC(done, &stats.End{})
	if reads.Held() == 0 {
		t.Fatal("a call that ended with its trailers gave its answer back before the answer was written")
	}
	data.Free() // written
	if reads.Held() != 0 {
		t.Fatalf("the answer written: the budget holds %d bytes", reads.Held())
	}
}

// kept counts the answers a connection's set keeps: what ended or was written must not
// stay there for as long as a long-lived client keeps its connection.
func kept(conn context.Context) int {
	h := conn.Value(connHoldsKey{}).(*holds)
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.set)
}
