package membudget

import (
	"context"
	"math"
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
	waiting []*waiter // acquires not yet admitted, in the order they came
}

// waiter is an Acquire waiting for its bytes: admitted is closed once they are taken.
type waiter struct {
	n        int64
	admitted chan struct{}
}

// Metrics are what a Budget reports, each optional (nil: not reported).
type Metrics struct {
	// Held follows the bytes the budget holds.
	Held prometheus.Gauge
	// Waits counts the acquires that could not be admitted at once and waited.
	Waits prometheus.Counter
}

// New returns a budget of limit bytes.
func New(limit int64, m Metrics) *Budget {
	return &Budget{limit: limit, metrics: m}
}

// Limit is the budget's limit in bytes.
func (b *Budget) Limit() int64 { return b.limit }

// Held is what the budget holds now.
func (b *Budget) Held() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// fits reports whether n more bytes fit; an empty budget takes anything, so that a
// request larger than the whole budget goes in alone, and nothing always fits. Called
// with mu held.
func (b *Budget) fits(n int64) bool { return n == 0 || b.used == 0 || b.used+n <= b.limit }

// Acquire takes n bytes once they fit, waiting until then or until ctx ends (its error
// is then returned, and nothing is taken). Acquires are admitted in the order they came:
// one that waits holds back those after it, so that a large request is not starved by a
// stream of small ones.
func (b *Budget) Acquire(ctx context.Context, n int64) error {
	b.mu.Lock()
	if len(b.waiting) == 0 && b.fits(n) {
		b.used += n
		b.mu.Unlock()
		b.held(n)
		return nil
	}
	w := &waiter{n: n, admitted: make(chan struct{})}
	b.waiting = append(b.waiting, w)
	b.mu.Unlock()
	if b.metrics.Waits != nil {
		b.metrics.Waits.Inc()
	}
	select {
	case <-w.admitted:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	select {
	case <-w.admitted: // admitted as ctx ended: give the bytes back
		b.mu.Unlock()
		b.Release(n)
		return ctx.Err()
	default:
	}
	for i, o := range b.waiting {
		if o == w {
			b.waiting = append(b.waiting[:i], b.waiting[i+1:]...)
			break
		}
	}
	admitted := b.admit() // those it held back may fit
	b.mu.Unlock()
	b.held(admitted)
	return ctx.Err()
}

// admit takes the bytes of the waiters at the head of the queue that fit, in order, and
// returns how many it took. Called with mu held.
func (b *Budget) admit() int64 {
	took := int64(0)
	for len(b.waiting) > 0 && b.fits(b.waiting[0].n) {
		w := b.waiting[0]
		b.waiting = b.waiting[1:]
		b.used += w.n
		took += w.n
		close(w.admitted)
	}
	return took
}

// Room is how many more bytes a holder of own bytes may take (TakeWithin) and stay within
// the budget's limit and over more: all it wants (math.MaxInt64) when it is alone in the
// budget, as an empty budget admits anything. Others may take it meanwhile: it bounds
// what the holder sets out to take, TakeWithin decides.
func (b *Budget) Room(own, over int64) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.roomLocked(own, over)
}

func (b *Budget) roomLocked(own, over int64) int64 {
	if b.used <= own {
		return math.MaxInt64
	}
	return max(0, b.limit+over-b.used)
}

// TakeWithin takes n bytes at once, spent or not, if the holder of own bytes has the room for
// them (Room), and reports whether it did; the check and the take are one step, so that
// holders taking at the same moment cannot each take the same room.
func (b *Budget) TakeWithin(own, over, n int64) bool {
	b.mu.Lock()
	if n > b.roomLocked(own, over) {
		b.mu.Unlock()
		return false
	}
	b.used += n
	b.mu.Unlock()
	b.held(n)
	return true
}

// take takes n bytes at once, spent or not: for bytes that are in memory already and are
// accounted until they are given back, so that the acquires after them wait.
func (b *Budget) take(n int64) {
	b.mu.Lock()
	b.used += n
	b.mu.Unlock()
	b.held(n)
}

// Release gives back n bytes taken by Acquire (or a Reservation's growth), and admits the waiters they make
// room for.
func (b *Budget) Release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	admitted := b.admit()
	b.mu.Unlock()
	b.held(admitted - n)
}

func (b *Budget) held(delta int64) {
	if b.metrics.Held != nil && delta != 0 {
		b.metrics.Held.Add(float64(delta))
	}
}
