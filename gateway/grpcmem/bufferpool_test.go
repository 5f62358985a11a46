package grpcmem

import "testing"

func TestBufferPoolClasses(t *testing.T) {
	p := NewBufferPool()
	for _, tc := range []struct{ n, cap int }{
		{0, 256}, {1, 256}, {256, 256}, {257, 512}, {100 << 10, 128 << 10}, {1 << 20, 1 << 20}, {16 << 20, 16 << 20},
		{16<<20 + 1, 16<<20 + 1}, // larger than the largest class: exactly its size
	} {
		b := p.Get(tc.n)
		if len(*b) != tc.n || cap(*b) != tc.cap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tc.n, len(*b), cap(*b), tc.n, tc.cap)
		}
		p.Put(b)
	}
	// A buffer given back is handed out again at the length asked for, whatever it held.
	b := p.Get(1000)
	(*b)[0] = 42
	p.Put(b)
	again := p.Get(600)
	if len(*again) != 600 || cap(*again) != 1024 {
		t.Fatalf("after Put: len %d cap %d", len(*again), cap(*again))
	}
	// Buffers of other capacities are not kept (they would be handed out as a class).
	odd := make([]byte, 10, 300)
	p.Put(&odd)
	if got := p.Get(300); cap(*got) != 512 {
		t.Fatalf("a foreign buffer of cap 300 came back for 300 bytes: cap %d", cap(*got))
	}
}
