package grpcmem

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip"  // clients may send compressed requests
	_ "google.golang.org/grpc/encoding/proto" // registers the codec wrapped below
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// ServerOptions are the gRPC server options of the client API: message buffers from a
// pool that does not zero them, for the transport and for the messages the codec
// encodes and decodes, socket buffers sized for messages of a megabyte, and answers
// that are never compressed.
func ServerOptions() []grpc.ServerOption {
	pool := NewBufferPool()
	return []grpc.ServerOption{
		experimental.BufferPool(pool),
		grpc.ForceServerCodecV2(newCodec(pool, false)),
		grpc.WriteBufferSize(TransportBufferBytes),
		grpc.ReadBufferSize(TransportBufferBytes),
		// The write buffer goes back to a pool between flushes: idle connections
		// then hold none of it.
		grpc.SharedWriteBuffer(true),
		// Gives back what a closed connection's answers held (held.go).
		grpc.StatsHandler(statsHandler{}),
		// Answers go uncompressed whatever the client asks (it may ask gzip, which
		// gRPC would otherwise answer with): gRPC frees an encoded answer once it is
		// compressed, before the compressed copy is written, so the read budget would
		// stop counting it there (held.go); and Go's gzip compresses 62 MB/s on one of
		// this machine's cores (records of random text, to 0.75 of their size), a
		// seventh to a ninth of what a catch-up read sends uncompressed
		// (docs/BENCHMARKS.md, item 34).
		// They must run before anything sends the headers: ServerOptions come first
		// in the server's options, and their interceptors first in its chains.
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			_ = grpc.SetSendCompressor(ctx, encoding.Identity) // identity is always valid
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			_ = grpc.SetSendCompressor(ss.Context(), encoding.Identity)
			return handler(srv, ss)
		}),
	}
}

// DialOptions are the same for a client connection, with flow-control windows that let
// the server send a fetch answer of a few megabytes without waiting for the client to
// grant more.
func DialOptions() []grpc.DialOption {
	pool := NewBufferPool()
	return []grpc.DialOption{
		experimental.WithBufferPool(pool),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(newCodec(pool, true))),
		grpc.WithWriteBufferSize(TransportBufferBytes),
		grpc.WithReadBufferSize(TransportBufferBytes),
		grpc.WithSharedWriteBuffer(true),
		grpc.WithInitialWindowSize(StreamWindowBytes),
		grpc.WithInitialConnWindowSize(4 * StreamWindowBytes),
	}
}

// TransportBufferBytes is the size of a connection's socket read buffer and write
// buffer. gRPC's default, 32 KiB, took 32 write system calls to send a fetch answer of
// 1 MiB; they were 14% of the agent's CPU in a catch-up read (docs/BENCHMARKS.md).
const TransportBufferBytes = 256 << 10

// StreamWindowBytes is a client stream's flow-control window: twice the default fetch,
// so that a fetch answer goes out without waiting for the client to grant more. (A
// window set this way turns off gRPC's estimate of the bandwidth-delay product, which
// starts from 64 KiB and grows the window as it measures.)
const StreamWindowBytes = 2 << 20

// codec is gRPC's protobuf codec but for the buffers of large messages: gRPC's takes
// them from its default pool, which zeroes them first (a 1 MiB buffer for a message of
// 100 KiB), this one from pool.
//
// A client's codec also decodes fetch answers with their records' bytes aliasing the
// message (decodeFetchResponse) rather than copied one by one.
type codec struct {
	encoding.CodecV2
	pool       mem.BufferPool
	aliasFetch bool
}

func newCodec(pool mem.BufferPool, aliasFetch bool) codec {
	return codec{CodecV2: encoding.GetCodecV2("proto"), pool: pool, aliasFetch: aliasFetch}
}

// Marshal encodes v into a buffer of exactly its size from the pool (a small message
// into a fresh one, as gRPC's does). A message held by a reservation (HoldUntilWritten)
// is accounted at its encoded size until the transport frees the buffer.
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("marshal: %T is not a protobuf message", v)
	}
	a := heldBy(m)
	size := proto.Size(m)
	if mem.IsBelowBufferPoolingThreshold(size) {
		a.release() // a fresh buffer, no longer than a few records: not worth accounting
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := c.pool.Get(size)
	// The size was just computed: UseCachedSize spares computing it again.
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*buf)[:0], m)
	if err != nil {
		c.pool.Put(buf)
		a.release()
		return nil, err
	}
	*buf = b // the same array: it holds exactly size bytes
	if a == nil {
		return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
	}
	a.r.Resize(int64(size))
	return mem.BufferSlice{mem.NewBuffer(buf, releasingPool{BufferPool: c.pool, a: a})}, nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("unmarshal: %T is not a protobuf message", v)
	}
	if f, ok := m.(*pb.FetchResponse); ok && c.aliasFetch {
		// A buffer of its own, not the pool's: the records keep it.
		return decodeFetchResponse(data.Materialize(), f)
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	// proto.Unmarshal copies what it keeps, so the buffer can go back to the pool.
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}
