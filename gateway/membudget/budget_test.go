package membudget

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// Bytes go in while they fit, or alone into an empty budget; once they do not, an
// acquire waits until bytes are given back (or its context ends), and acquires are
// admitted in the order they came.
func TestAcquireWaitsUntilItFits(t *testing.T) {
	ctx := context.Background()
	b := New(100, Metrics{})
	if err := b.Acquire(ctx, 60); err != nil {
		t.Fatal(err)
	}
	in := func(n int64) chan error {
		ch := make(chan error, 1)
		go func() { ch <- b.Acquire(ctx, n) }()
		return ch
	}
	waits := func(ch chan error, what string) {
		t.Helper()
		select {
		case err := <-ch:
			t.Fatalf("%s went in: %v, holding %d", what, err, b.Held())
		case <-time.After(50 * time.Millisecond):
		}
	}
	large := in(60) // 120 > 100: waits
	waits(large, "60 bytes with 60 of 100 held")
	small := in(10) // would fit, but comes after the large one: waits its turn
	waits(small, "10 bytes behind a waiting 60")
	b.Release(60) // empty: the large one, then the small one behind it
	if err := <-large; err != nil {
		t.Fatal(err)
	}
	if err := <-small; err != nil || b.Held() != 70 {
		t.Fatalf("after a release: %v, holding %d", err, b.Held())
	}

	// A request larger than the whole budget goes in alone, once the budget is empty.
	huge := in(150)
	waits(huge, "150 bytes with 70 held")
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.Acquire(short, 1); !errors.Is(err, context.DeadlineExceeded) || b.Held() != 70 {
		t.Fatalf("a wait whose context ended: %v, holding %d", err, b.Held())
	}
	b.Release(60)
	waits(huge, "150 bytes with 10 held")
	b.Release(10)
	if err := <-huge; err != nil || b.Held() != 150 {
		t.Fatalf("into the empty budget: %v, holding %d", err, b.Held())
	}
	// A waiter whose context ends lets those behind it in.
	b.Release(150)
	if err := b.Acquire(ctx, 50); err != nil {
		t.Fatal(err)
	}
	gone, stop := context.WithCancel(ctx)
	ahead := make(chan error, 1)
	go func() { ahead <- b.Acquire(gone, 60) }()
	time.Sleep(20 * time.Millisecond)
	behind := in(40) // would fit, behind the 60 that does not
	waits(behind, "40 bytes behind a waiting 60")
	stop()
	if err := <-ahead; !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiter whose context ended: %v", err)
	}
	if err := <-behind; err != nil || b.Held() != 90 {
		t.Fatalf("behind a waiter whose context ended: %v, holding %d", err, b.Held())
	}
	// Take does not wait, spent or not.
	b.Take(20)
	if b.Held() != 110 {
		t.Fatalf("after a take of 20: holding %d", b.Held())
	}
	b.Release(110)
	b.mu.Lock()
	used, waiting := b.used, len(b.waiting)
	b.mu.Unlock()
	if used != 0 || waiting != 0 {
		t.Fatalf("all given back: %d held, %d waiting", used, waiting)
	}
}

// Many connections at once: every request goes in, and what is held never exceeds the
// limit.
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
	if peak > limit || peak < limit-largest || b.Held() != 0 {
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
