package actors

import "sync/atomic"

// budget is a byte budget shared by every partition of an agent, so that the agent's
// memory is bounded by its flags whatever the number of partitions it serves. Partitions
// take bytes from it without a lock (take), checking and taking in one step.
type budget struct {
	limit int64
	used  atomic.Int64
}

func newBudget(limit int64) *budget { return &budget{limit: limit} }

// add accounts n bytes (negative to give them back) and returns the new total.
func (b *budget) add(n int64) int64 { return b.used.Add(n) }

// take accounts n bytes if they fit, and reports whether they did. An empty budget takes
// anything, so that one request larger than the whole budget is not refused forever.
// Checking and taking are one step: partitions admitting requests at the same instant
// cannot each see room for theirs and together overshoot the budget (a Kafka produce
// request carries a batch of up to 1 MB for each of its partitions, and its partitions
// admit them at once).
func (b *budget) take(n int64) bool {
	for {
		used := b.used.Load()
		if used != 0 && used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}
