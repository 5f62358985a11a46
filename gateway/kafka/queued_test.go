package kafka

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// A frame goes in while some of the budget is left, whatever its size, so that what is
// held exceeds the limit by less than one frame; once the budget is spent, a frame waits
// until bytes are given back (or its context ends).
func TestQueuedBytesWaitOnceSpent(t *testing.T) {
	ctx := context.Background()
	q := newQueuedBytes(100)
	for _, n := range []int64{60, 60} { // the second goes in with 40 left
		if err := q.acquire(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	in := make(chan error, 1)
	go func() { in <- q.acquire(ctx, 1) }()
	select {
	case err := <-in:
		t.Fatalf("a byte went in with 120 of 100 held: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	q.release(60) // 60 held: some left
	if err := <-in; err != nil || q.held() != 61 {
		t.Fatalf("after a release: %v, holding %d", err, q.held())
	}

	// A frame larger than the whole budget is not starved by what else is held.
	if err := q.acquire(ctx, 150); err != nil || q.held() != 211 {
		t.Fatalf("a large frame with 39 left: %v, holding %d", err, q.held())
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := q.acquire(short, 1); !errors.Is(err, context.DeadlineExceeded) || q.held() != 211 {
		t.Fatalf("a wait whose context ended: %v, holding %d", err, q.held())
	}
	q.releaser(150)()
	q.releaser(60)()
	q.releaser(1)()
	q.releaser(0)() // nothing taken, nothing given back
	q.mu.Lock()
	used, waiters := q.used, q.waiters
	q.mu.Unlock()
	if used != 0 || waiters != 0 {
		t.Fatalf("all given back: %d held, %d waiters", used, waiters)
	}
}

// Many connections at once: every frame goes in, and what is held never exceeds the
// limit by a frame or more.
func TestQueuedBytesBoundConcurrentFrames(t *testing.T) {
	const limit, largest = 1000, 449
	q := newQueuedBytes(limit)
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := int64(0)
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				n := int64(50 + (g*37+i*11)%400)
				if err := q.acquire(context.Background(), n); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				peak = max(peak, q.held())
				mu.Unlock()
				time.Sleep(100 * time.Microsecond) // the request being served, not a wait for a condition
				q.release(n)
			}
		})
	}
	wg.Wait()
	if peak >= limit+largest || peak < limit || q.held() != 0 {
		t.Fatalf("peak %d bytes held of a %d-byte limit (frames up to %d); %d held at the end", peak, limit, largest, q.held())
	}
}
