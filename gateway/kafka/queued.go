package kafka

import (
	"context"
	"sync"
)

// DefaultMaxQueuedBytes bounds the request frames an agent's Kafka listener holds over all
// its connections (Options.MaxQueuedBytes). It exceeds what one producer keeps in flight
// on its connection (MaxInFlightBytes), so that a single client is never held by it.
const DefaultMaxQueuedBytes = 96 << 20

// queuedBytes is the agent-wide budget of request frames read and not yet answered,
// Kafka's queued.max.request.bytes: a connection whose next frame does not fit reads no
// further until requests of any connection are answered, so that clients are slowed by
// TCP's flow control instead of the agent's memory growing with its connections (each
// of which may pipeline MaxInFlightBytes of produce requests, and send frames of up to
// MaxFrameBytes). A frame larger than the whole budget is read when nothing else is
// held, so that no request is refused for its size alone: MaxFrameBytes bounds that.
// Waiters are not served in order: a large frame may wait while small ones keep the
// budget in use.
type queuedBytes struct {
	limit int64

	mu    sync.Mutex
	used  int64
	freed chan struct{} // closed, and replaced, whenever bytes are given back
}

func newQueuedBytes(limit int64) *queuedBytes {
	return &queuedBytes{limit: limit, freed: make(chan struct{})}
}

// acquire takes n bytes, waiting until they fit or ctx ends.
func (q *queuedBytes) acquire(ctx context.Context, n int64) error {
	waited := false
	for {
		q.mu.Lock()
		if q.used == 0 || q.used+n <= q.limit {
			q.used += n
			metricQueuedBytes.Set(float64(q.used))
			q.mu.Unlock()
			return nil
		}
		freed := q.freed
		q.mu.Unlock()
		if !waited {
			waited = true
			metricQueuedWaits.Inc()
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// release gives back n bytes taken by acquire.
func (q *queuedBytes) release(n int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.used -= n
	metricQueuedBytes.Set(float64(q.used))
	close(q.freed)
	q.freed = make(chan struct{})
}

// releaser returns a func that gives back n bytes taken by acquire (none: n is 0); it is
// called once, when their request is answered.
func (q *queuedBytes) releaser(n int) func() {
	return func() {
		if n > 0 {
			q.release(int64(n))
		}
	}
}

// held is what the budget holds now.
func (q *queuedBytes) held() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.used
}
