// Package grpcmem holds the message buffers of the client API's gRPC connections, on both
// ends: a pool that hands out buffers without zeroing them (NewBufferPool), used by the
// transport and by a protobuf codec that encodes into and decodes from it.
//
// gRPC's default pool zeroes a buffer's whole capacity on every Get and keeps nothing
// between 32 KiB and 1 MiB, so every produce request of 100 records of 1 KiB had a 1 MiB
// buffer zeroed: at the maximum produce rate 4% of the agent's CPU when it decoded one
// and 29% of streamctl bench's when it encoded one (docs/BENCHMARKS.md). ServerOptions is
// for the agent's server, DialOptions for clients (streamctl).
//
// Both also size the transport's socket buffers for messages of a megabyte
// (TransportBufferBytes), and a client's codec decodes fetch answers with the records'
// bytes aliasing the message instead of copied one by one (decodeFetchResponse).
package grpcmem
