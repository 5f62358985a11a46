package membudget

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// Bytes go in while some of the budget is left, whatever their size, so that what is
// held exceeds the limit by less than one request; once the budget is spent, an acquire
// waits until bytes are given back (or its context ends).
func TestAcquireWaitsOnceSpent(t *testing.T) {
	ctx := context.Background()
	b := New(100, Metrics{})
	for _, n := range []int64{60, 60} { // the second goes in with 40 left
		if err := b.Acquire(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	in := make(chan error, 1)
	go func() { in <- b.Acquire(ctx, 1) }()
	select {
	case err := <-in:
		t.Fatalf("a byte went in with 120 of 100 held: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	b.Release(60) // 60 held: some left
	if err := <-in; err != nil || b.Held() != 61 {
		t.Fatalf("after a release: %v, holding %d", err, b.Held())
	}

	// A request larger than the whole budget is not starved by what else is held.
	if err := b.Acquire(ctx, 150); err != nil || b.Held() != 211 {
		t.Fatalf("a large request with 39 left: %v, holding %d", err, b.Held())
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.Acquire(short, 1); !errors.Is(err, context.DeadlineExceeded) || b.Held() != 211 {
		t.Fatalf("a wait whose context ended: %v, holding %d", err, b.Held())
	}
	// Take does not wait, spent or not, and makes the next acquire wait.
	b.Take(10)
	if b.Held() != 221 {
		t.Fatalf("after a take of 10: holding %d", b.Held())
	}
	for _, n := range []int64{150, 60, 1, 10, 0} {
		b.Release(n)
	}
	b.mu.Lock()
	used, waiters := b.used, b.waiters
	b.mu.Unlock()
	if used != 0 || waiters != 0 {
		t.Fatalf("all given back: %d held, %d waiters", used, waiters)
	}
}

// Many connections at once: every request goes in, and what is held never exceeds the
// limit by a request or more.
func TestAcquireBoundsConcurrentRequests(t *testing.T) {
	const limit, largest = 1000, 449
	b := New(limit, Metrics{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := int64(0)
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				n := int64(50 + (g*37+i*11)%400)
				if err := b.Acquire(context.Background(), n); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				peak = max(peak, b.Held())
				mu.Unlock()
				time.Sleep(100 * time.Microsecond) // the request being served, not a wait for a condition
				b.Release(n)
			}
		})
	}
	wg.Wait()
	if peak >= limit+largest || peak < limit || b.Held() != 0 {
		t.Fatalf("peak %d bytes held of a %d-byte limit (requests up to %d); %d held at the end", peak, limit, largest, b.Held())
	}
}

// A reservation follows what its request holds and gives it back exactly once, from
// whichever goroutine releases it.
func TestReservationResizesAndReleasesOnce(t *testing.T) {
	ctx := context.Background()
	b := New(100, Metrics{})
	r, err := b.Reserve(ctx, 80)
	if err != nil {
		t.Fatal(err)
	}
	r.Resize(30) // the answer turned out smaller
	if b.Held() != 30 || r.Bytes() != 30 {
		t.Fatalf("resized to 30: budget holds %d, reservation %d", b.Held(), r.Bytes())
	}
	r.Resize(250) // or larger than the whole budget: it exists already
	if b.Held() != 250 {
		t.Fatalf("resized to 250: budget holds %d", b.Held())
	}
	h := b.Hold(5)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { r.Release(); h.Release() })
	}
	wg.Wait()
	r.Resize(40) // after release: nothing
	var none *Reservation
	none.Resize(10)
	none.Release()
	if b.Held() != 0 || none.Bytes() != 0 {
		t.Fatalf("released 8 times over: budget holds %d", b.Held())
	}
}
