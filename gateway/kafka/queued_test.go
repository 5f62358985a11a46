package kafka

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// The queued bytes never exceed the limit, but for one frame larger than the whole
// limit, which is read alone; a frame that does not fit waits until bytes are given back
// (or its context ends), and then goes in.
func TestQueuedBytesWaitRatherThanGrow(t *testing.T) {
	ctx := context.Background()
	q := newQueuedBytes(100)
	if err := q.acquire(ctx, 60); err != nil {
		t.Fatal(err)
	}
	in := make(chan error, 1)
	go func() { in <- q.acquire(ctx, 60) }()
	select {
	case err := <-in:
		t.Fatalf("60 more bytes went in over 60 of a 100-byte limit: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	q.release(60)
	if err := <-in; err != nil || q.held() != 60 {
		t.Fatalf("after a release: %v, holding %d", err, q.held())
	}

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := q.acquire(short, 50); !errors.Is(err, context.DeadlineExceeded) || q.held() != 60 {
		t.Fatalf("a wait whose context ended: %v, holding %d", err, q.held())
	}
	q.release(60)

	// Larger than the limit: read when nothing else is held, and alone.
	if err := q.acquire(ctx, 150); err != nil {
		t.Fatal(err)
	}
	go func() { in <- q.acquire(ctx, 1) }()
	select {
	case <-in:
		t.Fatal("a byte went in beside a frame over the limit")
	case <-time.After(50 * time.Millisecond):
	}
	q.releaser(150)()
	if err := <-in; err != nil || q.held() != 1 {
		t.Fatalf("after the large frame: %v, holding %d", err, q.held())
	}
	q.releaser(0)() // nothing taken, nothing given back
	if q.held() != 1 {
		t.Fatalf("a releaser of 0 bytes gave back: holding %d", q.held())
	}
}

// Many connections at once: every frame goes in, and what is held stays within the
// limit at every moment.
func TestQueuedBytesBoundConcurrentFrames(t *testing.T) {
	const limit = 1000
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
				time.Sleep(100 * time.Microsecond)
				q.release(n)
			}
		})
	}
	wg.Wait()
	if peak > limit || q.held() != 0 {
		t.Fatalf("peak %d bytes held of a %d-byte limit; %d held at the end", peak, limit, q.held())
	}
}
