package gateway

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
// pool that does not zero them (NewBufferPool), for the transport and for the messages
// the codec decodes (encoding uses gRPC's own pool).
func ServerOptions() []grpc.ServerOption {
	pool := NewBufferPool()
	return []grpc.ServerOption{
		experimental.BufferPool(pool),
		grpc.ForceServerCodecV2(codec{CodecV2: encoding.GetCodecV2("proto"), pool: pool}),
	}
}

// codec is gRPC's protobuf codec but for the buffer a received message is gathered into
// before it is decoded: gRPC's takes it from its default pool, which zeroes it first (a
// 1 MiB buffer for a produce request of 100 KiB), this one from the server's pool.
type codec struct {
	encoding.CodecV2
	pool mem.BufferPool
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
