package grpcmem

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

// Buffer classes of the pool: powers of two from 256 B to 16 MiB.
const (
	minBufferClass = 8
	maxBufferClass = 24
)

// bufferPool is a pool of message buffers: one sync.Pool per power of two, buffers
// handed out without zeroing. gRPC fills what it takes from a pool before reading it
// (frames, messages and writes are copied or read into the buffer up to the length
// asked for), and the codec encodes a whole message into what it takes, so earlier
// contents are never seen.
type bufferPool struct {
	classes [maxBufferClass + 1]sync.Pool
}

var _ mem.BufferPool = (*bufferPool)(nil)

// NewBufferPool returns an empty pool of message buffers.
func NewBufferPool() mem.BufferPool { return &bufferPool{} }

// Get returns a buffer of length n, from the smallest class that holds it; larger than
// the largest class, a fresh one.
func (p *bufferPool) Get(n int) *[]byte {
	c := max(bits.Len(uint(max(n, 1)-1)), minBufferClass)
	if c > maxBufferClass {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<c)
	return &b
}

// Put keeps a buffer of one of the classes for reuse; any other is left to the collector.
func (p *bufferPool) Put(b *[]byte) {
	c := cap(*b)
	if c&(c-1) != 0 || c < 1<<minBufferClass || c > 1<<maxBufferClass {
		return
	}
	p.classes[bits.TrailingZeros(uint(c))].Put(b)
}
