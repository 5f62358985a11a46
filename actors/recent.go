package actors

import (
	"sort"

	"github.com/streamhouse/streamhouse/segmentstore"
)

// recentLog keeps the last committed batches of a partition in memory, so that consumers
// at the tail are served without touching the object store (DESIGN.md §6). Its batches are
// contiguous: commits happen in offset order. Its bytes count in the agent's budget; when
// the budget is exceeded the log drops its own oldest batches, down to none (reads then go
// to the store), so that the agent's memory is bounded whatever its partition count.
type recentLog struct {
	budget  *budget
	bytes   int64
	batches []*batch // oldest first
}

func (r *recentLog) add(b *batch) {
	b.waiters = nil
	r.batches = append(r.batches, b)
	r.bytes += b.bytes
	r.budget.add(b.bytes)
	for r.budget.over() && len(r.batches) > 0 {
		r.drop()
	}
}

func (r *recentLog) drop() {
	r.bytes -= r.batches[0].bytes
	r.budget.add(-r.batches[0].bytes)
	r.batches[0] = nil
	r.batches = r.batches[1:]
}

// clear gives every batch back to the budget.
func (r *recentLog) clear() {
	for len(r.batches) > 0 {
		r.drop()
	}
}

// read returns committed records from offset from, stopping before their payload would
// exceed maxBytes (but at least one record). ok is false when from is older than what the
// log holds; the caller must read the store.
func (r *recentLog) read(from int64, maxBytes int) (recs []segmentstore.Record, ok bool) {
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
