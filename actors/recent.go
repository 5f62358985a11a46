package actors

import (
	"sort"

	"github.com/streamhouse/streamhouse/segmentstore"
)

// recentLog keeps the last committed batches of a partition in memory, so that consumers
// at the tail are served without touching the object store (DESIGN.md §6). Its batches are
// contiguous: commits happen in offset order.
type recentLog struct {
	limit   int64
	bytes   int64
	batches []*batch // oldest first
}

func (r *recentLog) add(b *batch) {
	b.waiters = nil
	r.batches = append(r.batches, b)
	r.bytes += b.bytes
	// Keep at least the newest batch, whatever its size.
	for r.bytes > r.limit && len(r.batches) > 1 {
		r.bytes -= r.batches[0].bytes
		r.batches[0] = nil
		r.batches = r.batches[1:]
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
