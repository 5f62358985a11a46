package actors

import "sync/atomic"

// budget is a byte budget shared by every partition of an agent, so that the agent's
// memory is bounded by its flags whatever the number of partitions it serves. Partitions
// check it before they take bytes, without a lock: concurrent partitions may overshoot it
// by the requests they admit at the same instant.
type budget struct {
	limit int64
	used  atomic.Int64
}

func newBudget(limit int64) *budget { return &budget{limit: limit} }

// add accounts n bytes (negative to give them back) and returns the new total.
func (b *budget) add(n int64) int64 { return b.used.Add(n) }

// admits reports whether n more bytes fit. An empty budget admits anything, so that one
// request larger than the whole budget is not refused forever.
func (b *budget) admits(n int64) bool {
	used := b.used.Load()
	return used == 0 || used+n <= b.limit
}
