package actors

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Memory budgets of an agent, as the values of the budget label of
// streamhouse_memory_used_bytes and streamhouse_memory_limit_bytes.
const (
	budgetPending = "pending" // records accepted and not yet acked, and their segments until written
	budgetRecent  = "recent"  // committed batches kept for tail reads and merges
	budgetCache   = "cache"   // blocks read from the store
)

var (
	descMemoryUsed = prometheus.NewDesc("streamhouse_memory_used_bytes",
		"Bytes each memory budget of the agent holds (--max-pending-bytes, --recent-bytes, --cache-bytes).",
		[]string{"budget"}, nil)
	descMemoryLimit = prometheus.NewDesc("streamhouse_memory_limit_bytes",
		"Each memory budget's limit.", []string{"budget"}, nil)
)

// memoryCollector reports a node's budgets when they are scraped, so that the gauges
// are never stale. The admin port registers its node's on its own registry, so that a
// process running several nodes (tests, dev) reports each once where it serves it.
type memoryCollector struct{ n *Node }

func (c memoryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descMemoryUsed
	ch <- descMemoryLimit
}

func (c memoryCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	for _, b := range []struct {
		name        string
		used, limit int64
	}{
		{budgetPending, n.pending.used.Load(), n.pending.limit},
		{budgetRecent, n.recent.bytes(), n.recent.limit},
		{budgetCache, n.hist.cache.Bytes(), n.cfg.CacheBytes},
	} {
		ch <- prometheus.MustNewConstMetric(descMemoryUsed, prometheus.GaugeValue, float64(b.used), b.name)
		ch <- prometheus.MustNewConstMetric(descMemoryLimit, prometheus.GaugeValue, float64(b.limit), b.name)
	}
}

// MemoryCollector returns the collector of the node's memory budgets, for the agent to
// register.
func (n *Node) MemoryCollector() prometheus.Collector { return memoryCollector{n} }
