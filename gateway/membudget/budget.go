package membudget

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Budget is a byte budget shared by every connection of an agent. The zero value is not
// usable: see New.
type Budget struct {
	limit   int64
	metrics Metrics

	mu      sync.Mutex
	used    int64
	waiters int           // acquires waiting for freed
	freed   chan struct{} // closed, and replaced, when bytes are given back while some wait
}

// Metrics are what a Budget reports, each optional (nil: not reported).
type Metrics struct {
	// Held follows the bytes the budget holds.
	Held prometheus.Gauge
	// Waits counts the acquires that found the budget spent and waited.
	Waits prometheus.Counter
}

// New returns a budget of limit bytes.
func New(limit int64, m Metrics) *Budget {
	return &Budget{limit: limit, metrics: m, freed: make(chan struct{})}
}

// Limit is the budget's limit in bytes.
func (b *Budget) Limit() int64 { return b.limit }

// Held is what the budget holds now.
func (b *Budget) Held() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Acquire takes n bytes once some of the budget is left, waiting until then or until ctx
// ends (its error is then returned, and nothing is taken).
func (b *Budget) Acquire(ctx context.Context, n int64) error {
	b.mu.Lock()
	if b.used >= b.limit && b.metrics.Waits != nil {
		b.metrics.Waits.Inc()
	}
	for b.used >= b.limit {
		freed := b.freed
		b.waiters++
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			b.mu.Lock()
			b.waiters--
			b.mu.Unlock()
			return ctx.Err()
		}
		b.mu.Lock()
		b.waiters--
	}
	b.used += n
	b.mu.Unlock()
	b.held(n)
	return nil
}

// Take takes n bytes at once, spent or not: for bytes that are in memory already and are
// accounted until they are given back, so that the acquires after them wait.
func (b *Budget) Take(n int64) {
	b.mu.Lock()
	b.used += n
	b.mu.Unlock()
	b.held(n)
}

// Release gives back n bytes taken by Acquire or Take.
func (b *Budget) Release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	if b.waiters > 0 {
		close(b.freed)
		b.freed = make(chan struct{})
	}
	b.mu.Unlock()
	b.held(-n)
}

func (b *Budget) held(delta int64) {
	if b.metrics.Held != nil {
		b.metrics.Held.Add(float64(delta))
	}
}
