package actors

import (
	"sort"
	"sync"

	"github.com/streamhouse/streamhouse/segmentstore"
)

// recentLog keeps the last committed batches of a partition in memory, so that consumers
// at the tail are served without touching the object store (DESIGN.md §6). Its batches are
// contiguous: commits happen in offset order. Its owner adds and reads on the partition's
// goroutine; the agent's recentCache may drop its oldest batch from any goroutine.
type recentLog struct {
	cache   *recentCache
	mu      sync.Mutex
	bytes   int64
	batches []*batch // oldest first
}

func (r *recentLog) add(b *batch) {
	b.waiters = nil
	r.mu.Lock()
	r.batches = append(r.batches, b)
	r.bytes += b.memBytes()
	r.mu.Unlock()
	r.cache.push(r, b)
}

// dropOldest drops b if it is still the log's oldest batch.
func (r *recentLog) dropOldest(b *batch) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.batches) == 0 || r.batches[0] != b {
		return false
	}
	r.bytes -= b.memBytes()
	r.batches[0] = nil
	r.batches = r.batches[1:]
	b.evicted.Store(true)
	return true
}

// clear drops every batch and gives its bytes back to the cache.
func (r *recentLog) clear() {
	r.mu.Lock()
	n, bytes := len(r.batches), r.bytes
	for _, b := range r.batches {
		b.evicted.Store(true)
	}
	r.batches, r.bytes = nil, 0
	r.mu.Unlock()
	r.cache.forget(n, bytes)
}

// encoded returns the stored bytes of the segment [base, last] if the log still holds
// its batch.
func (r *recentLog) encoded(base, last int64) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := sort.Search(len(r.batches), func(i int) bool { return r.batches[i].base >= base })
	if i == len(r.batches) || r.batches[i].base != base || r.batches[i].last() != last || r.batches[i].encoded == nil {
		return nil, false
	}
	return r.batches[i].encoded, true
}

// read returns committed records from offset from, stopping before their payload would
// exceed maxBytes (but at least one record). ok is false when from is older than what the
// log holds; the caller must read the store.
func (r *recentLog) read(from int64, maxBytes int) (recs []segmentstore.Record, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.batches) == 0 || from < r.batches[0].base {
		return nil, false
	}
	size, full := 0, false
	for i := sort.Search(len(r.batches), func(i int) bool { return r.batches[i].last() >= from }); i < len(r.batches) && !full; i++ {
		b := r.batches[i]
		recs, size, full = segmentstore.Take(recs, size, b.records[max(from-b.base, 0):], from, maxBytes)
	}
	return recs, true
}

// recentCache bounds the recent logs of every partition of an agent together: it holds
// their batches in commit order and, past its limit, drops the agent's oldest batch,
// whichever partition holds it. So partitions that went quiet give their memory to the
// busy ones, and the agent's memory does not grow with its partition count.
type recentCache struct {
	limit int64
	mu    sync.Mutex
	used  int64
	fifo  []recentEntry // commit order; entries of cleared logs linger until popped
	dead  int           // entries in fifo whose batch a clear already dropped
}

type recentEntry struct {
	log *recentLog
	b   *batch
}

func newRecentCache(limit int64) *recentCache { return &recentCache{limit: limit} }

func (c *recentCache) push(r *recentLog, b *batch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fifo = append(c.fifo, recentEntry{r, b})
	c.used += b.memBytes()
	for c.used > c.limit && len(c.fifo) > 0 {
		e := c.fifo[0]
		c.fifo[0] = recentEntry{}
		c.fifo = c.fifo[1:]
		if e.log.dropOldest(e.b) {
			c.used -= e.b.memBytes()
		} else {
			c.dead--
		}
	}
}

// forget accounts n batches of bytes that a log dropped by itself.
func (c *recentCache) forget(n int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.used -= bytes
	c.dead += n
	if c.dead > 1024 && c.dead > len(c.fifo)/2 {
		live := c.fifo[:0]
		for _, e := range c.fifo {
			if !e.b.evicted.Load() {
				live = append(live, e)
			}
		}
		clear(c.fifo[len(live):])
		c.fifo, c.dead = live, 0
	}
}

// bytes is what the cache holds.
func (c *recentCache) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}
