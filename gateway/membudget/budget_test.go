package membudget

import (
	"context"
	"errors"
	"runtime"
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
	in := func(ctx context.Context, n int64) chan error {
		ch := make(chan error, 1)
		go func() { ch <- b.Acquire(ctx, n) }()
		return ch
	}
	// waits checks that ch's acquire is the queue's waiting-th and has not gone in.
	waits := func(ch chan error, waiting int, what string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; {
			b.mu.Lock()
			queued := len(b.waiting)
			b.mu.Unlock()
			if queued == waiting {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d acquires waiting, want %d", what, queued, waiting)
			}
			runtime.Gosched()
		}
		select {
		case err := <-ch:
			t.Fatalf("%s went in: %v, holding %d", what, err, b.Held())
		default:
		}
	}
	large := in(ctx, 60) // 120 > 100: waits
	waits(large, 1, "60 bytes with 60 of 100 held")
	small := in(ctx, 10) // would fit, but comes after the large one: waits its turn
	waits(small, 2, "10 bytes behind a waiting 60")
	b.Release(60) // empty: the large one, then the small one behind it
	if err := <-large; err != nil {
		t.Fatal(err)
	}
	if err := <-small; err != nil || b.Held() != 70 {
		t.Fatalf("after a release: %v, holding %d", err, b.Held())
	}

	// A request larger than the whole budget goes in alone, once the budget is empty.
	huge := in(ctx, 150)
	waits(huge, 1, "150 bytes with 70 held")
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.Acquire(short, 1); !errors.Is(err, context.DeadlineExceeded) || b.Held() != 70 {
		t.Fatalf("a wait whose context ended: %v, holding %d", err, b.Held())
	}
	b.Release(60)
	waits(huge, 1, "150 bytes with 10 held")
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
	ahead := in(gone, 60)
	waits(ahead, 1, "60 bytes with 50 held")
	behind := in(ctx, 40) // would fit, behind the 60 that does not
	waits(behind, 2, "40 bytes behind a waiting 60")
	stop()
	if err := <-ahead; !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiter whose context ended: %v", err)
	}
	if err := <-behind; err != nil || b.Held() != 90 {
		t.Fatalf("behind a waiter whose context ended: %v, holding %d", err, b.Held())
	}
	// take does not wait, spent or not.
	b.take(20)
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
				runtime.Gosched() // the request being served: others run meanwhile
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
	if b.Held() != 30 {
		t.Fatalf("resized to 30: budget holds %d", b.Held())
	}
	r.Resize(250) // or larger than the whole budget: it exists already
	if b.Held() != 250 {
		t.Fatalf("resized to 250: budget holds %d", b.Held())
	}
	h, err := b.Reserve(ctx, 0) // spent: an empty request still goes in...
	if err != nil {
		t.Fatal(err)
	}
	h.Resize(5) // ...and grows without waiting
	h.Grow(3)
	if b.Held() != 258 {
		t.Fatalf("a second reservation resized to 5 and grown by 3: budget holds %d", b.Held())
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { r.Release(); h.Release() })
	}
	wg.Wait()
	r.Resize(40) // after release: nothing
	r.Grow(40)
	var none *Reservation
	none.Resize(10)
	none.Grow(10)
	none.Release()
	if b.Held() != 0 {
		t.Fatalf("released 8 times over: budget holds %d", b.Held())
	}
}

// TryReserve takes bytes that fit now, or a request larger than the whole budget into an
// empty one, and never waits: it refuses what does not fit, and what would pass an
// acquire already waiting.
func TestTryReserveTakesOnlyWhatFitsNow(t *testing.T) {
	b := New(100, Metrics{})
	big, ok := b.TryReserve(150)
	if !ok || b.Held() != 150 {
		t.Fatalf("a request larger than the budget, into an empty one: %v, %d held", ok, b.Held())
	}
	if _, ok := b.TryReserve(1); ok {
		t.Fatal("1 byte taken past a spent budget")
	}
	big.Release()
	r, ok := b.TryReserve(60)
	if !ok || b.Held() != 60 {
		t.Fatalf("60 of 100: %v, %d held", ok, b.Held())
	}
	waiting := make(chan error, 1)
	go func() { waiting <- b.Acquire(context.Background(), 50) }()
	for !b.hasWaiters() {
		runtime.Gosched()
	}
	if _, ok := b.TryReserve(10); ok {
		t.Fatal("10 bytes taken ahead of an acquire waiting for 50")
	}
	r.Release()
	if err := <-waiting; err != nil || b.Held() != 50 {
		t.Fatalf("the waiting acquire: %v, %d held", err, b.Held())
	}
}

// hasWaiters reports whether an acquire is waiting.
func (b *Budget) hasWaiters() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiting) > 0
}

// TakeWithin takes what fits within the limit and over more, anything for a holder alone
// in the budget, and nothing it refuses.
func TestTakeWithinTakesOnlyTheRoom(t *testing.T) {
	b := New(100, Metrics{})
	b.take(30) // a holder's own 30 bytes
	if !b.TakeWithin(30, 50, 500) || b.Held() != 530 {
		t.Fatalf("a holder alone in the budget: %d held, want 530", b.Held())
	}
	b.Release(500)
	b.take(40) // another holder's
	if b.TakeWithin(30, 50, 81) || b.Held() != 70 {
		t.Fatalf("81 bytes past 70 of a limit of 100 and 50 over: taken, %d held", b.Held())
	}
	if !b.TakeWithin(30, 50, 80) || b.Held() != 150 {
		t.Fatalf("80 bytes past 70 of a limit of 100 and 50 over: %d held, want 150", b.Held())
	}
	if !b.TakeWithin(110, 50, 0) {
		t.Fatal("nothing taken with no room left was refused")
	}
}
