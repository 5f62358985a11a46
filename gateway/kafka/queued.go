package kafka

import (
	"context"
	"sync"
)

// DefaultMaxQueuedBytes bounds the request frames an agent's Kafka listener holds over all
// its connections (Options.MaxQueuedBytes). It exceeds what one producer keeps in flight
// on its connection (MaxInFlightBytes), so that a single client is never held by it.
const DefaultMaxQueuedBytes = 96 << 20

// MinQueuedBytes is the least MaxQueuedBytes an agent accepts: below a produce request's
// size, every frame would wait for all the others.
const MinQueuedBytes = 1 << 20

// queuedBytes is the agent-wide budget of request frames read and not yet answered, as
// Kafka's queued.max.request.bytes: a connection whose next frame comes while the budget
// is spent reads no further until requests of any connection are answered, so that
// clients are slowed by TCP's flow control instead of the agent's memory growing with
// its connections (each of which may pipeline MaxInFlightBytes of produce requests, and
// send frames of up to MaxFrameBytes). As Kafka's pool, it admits a frame whenever some
// budget is left: what it holds exceeds the limit by less than one frame, and a frame
// larger than the whole budget, or one that comes while long-polling fetches hold a
// little of it, is never starved by smaller ones. It counts frames as they come, before
// a produce's records are decompressed.
type queuedBytes struct {
	limit int64

	mu      sync.Mutex
	used    int64
	waiters int           // acquires waiting for freed
	freed   chan struct{} // closed, and replaced, when bytes are given back while some wait
}

func newQueuedBytes(limit int64) *queuedBytes {
	return &queuedBytes{limit: limit, freed: make(chan struct{})}
}

// acquire takes n bytes once some of the budget is left, waiting until then or until ctx
// ends.
func (q *queuedBytes) acquire(ctx context.Context, n int64) error {
	q.mu.Lock()
	if q.used >= q.limit {
		metricQueuedWaits.Inc()
	}
	for q.used >= q.limit {
		freed := q.freed
		q.waiters++
		q.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			q.mu.Lock()
			q.waiters--
			q.mu.Unlock()
			return ctx.Err()
		}
		q.mu.Lock()
		q.waiters--
	}
	q.used += n
	q.mu.Unlock()
	metricQueuedBytes.Add(float64(n))
	return nil
}

// release gives back n bytes taken by acquire.
func (q *queuedBytes) release(n int64) {
	q.mu.Lock()
	q.used -= n
	if q.waiters > 0 {
		close(q.freed)
		q.freed = make(chan struct{})
	}
	q.mu.Unlock()
	metricQueuedBytes.Sub(float64(n))
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
