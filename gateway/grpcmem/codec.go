package grpcmem

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec wrapped below
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// ServerOptions are the gRPC server options of the client API: message buffers from a
// pool that does not zero them, for the transport and for the messages the codec
// encodes and decodes.
func ServerOptions() []grpc.ServerOption {
	pool := NewBufferPool()
	return []grpc.ServerOption{
		experimental.BufferPool(pool),
		grpc.ForceServerCodecV2(newCodec(pool)),
	}
}

// DialOptions are the same for a client connection.
func DialOptions() []grpc.DialOption {
	pool := NewBufferPool()
	return []grpc.DialOption{
		experimental.WithBufferPool(pool),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(newCodec(pool))),
	}
}

// codec is gRPC's protobuf codec but for the buffers of large messages: gRPC's takes
// them from its default pool, which zeroes them first (a 1 MiB buffer for a message of
// 100 KiB), this one from pool.
type codec struct {
	encoding.CodecV2
	pool mem.BufferPool
}

func newCodec(pool mem.BufferPool) codec {
	return codec{CodecV2: encoding.GetCodecV2("proto"), pool: pool}
}

// Marshal encodes v into a buffer of exactly its size from the pool (a small message
// into a fresh one, as gRPC's does).
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("marshal: %T is not a protobuf message", v)
	}
	size := proto.Size(m)
	if mem.IsBelowBufferPoolingThreshold(size) {
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
		return nil, err
	}
	*buf = b // the same array: it holds exactly size bytes
	return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("unmarshal: %T is not a protobuf message", v)
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	// proto.Unmarshal copies what it keeps, so the buffer can go back to the pool.
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}
