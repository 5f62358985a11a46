package membudget

import (
	"context"
	"sync"
)

// Reservation is bytes of a Budget held for one request, resized as the request learns
// what it holds and given back once, by Release, from whichever goroutine is last to
// hold them. A nil *Reservation holds nothing: its methods do nothing.
type Reservation struct {
	b *Budget

	mu       sync.Mutex
	n        int64
	released bool
}

// Reserve acquires n bytes of b (Acquire) for a request.
func (b *Budget) Reserve(ctx context.Context, n int64) (*Reservation, error) {
	if err := b.Acquire(ctx, n); err != nil {
		return nil, err
	}
	return &Reservation{b: b, n: n}, nil
}

// TryReserve reserves n bytes of b if they fit now, ahead of no waiting acquire, and
// reports whether it did; it never waits.
func (b *Budget) TryReserve(n int64) (*Reservation, bool) {
	b.mu.Lock()
	if len(b.waiting) > 0 || !b.fits(n) {
		b.mu.Unlock()
		return nil, false
	}
	b.used += n
	b.mu.Unlock()
	b.held(n)
	return &Reservation{b: b, n: n}, true
}

// Resize makes the reservation hold n bytes: what its request turned out to hold, more or
// less than it reserved. Growing does not wait (the bytes exist already); after Release
// it does nothing.
func (r *Reservation) Resize(n int64) { r.resize(n, false) }

// Grow makes the reservation hold n bytes more, without waiting (the bytes exist, or are
// about to); after Release it does nothing.
func (r *Reservation) Grow(n int64) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.released && n > 0 {
		r.n += n
		r.b.take(n)
	}
}

// Release gives the reservation's bytes back; calls after the first do nothing.
func (r *Reservation) Release() { r.resize(0, true) }

func (r *Reservation) resize(n int64, release bool) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.released {
		return
	}
	switch {
	case n > r.n:
		r.b.take(n - r.n)
	case n < r.n:
		r.b.Release(r.n - n)
	}
	r.n, r.released = n, release
}
