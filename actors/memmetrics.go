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
		"Bytes each memory budget of the agent holds (--max-pending-bytes, --recent-bytes, --cache-bytes, --max-read-bytes).",
		[]string{"budget"}, nil)
	descMemoryLimit = prometheus.NewDesc("streamhouse_memory_limit_bytes",
		"Each memory budget's limit.", []string{"budget"}, nil)
)

// memoryCollector reports a node's budgets when they are scraped, so that the gauges
// are never stale. The admin port registers its node's on its own registry, so that a
// process running several nodes (tests, dev) reports each once where it serves it.
type memoryCollector struct {
	n      *Node
	others []MemoryBudget
}

// MemoryBudget is a memory budget of the agent held outside its node (the listeners'
// read budget), reported with the node's own.
type MemoryBudget struct {
	// Name is the budget label's value.
	Name string
	// Used reports what the budget holds when it is scraped.
	Used func() int64
	// Limit is its limit in bytes.
	Limit int64
}

func (c memoryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descMemoryUsed
	ch <- descMemoryLimit
}

func (c memoryCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	report := func(name string, used, limit int64) {
		ch <- prometheus.MustNewConstMetric(descMemoryUsed, prometheus.GaugeValue, float64(used), name)
		ch <- prometheus.MustNewConstMetric(descMemoryLimit, prometheus.GaugeValue, float64(limit), name)
	}
	report(budgetPending, n.pending.used.Load(), n.pending.limit)
	report(budgetRecent, n.recent.bytes(), n.recent.limit)
	report(budgetCache, n.hist.cache.Bytes(), n.cfg.CacheBytes)
	for _, b := range c.others {
		report(b.Name, b.Used(), b.Limit)
	}
}

// MemoryCollector returns the collector of the node's memory budgets and others', for
// the agent to register.
func (n *Node) MemoryCollector(others ...MemoryBudget) prometheus.Collector {
	return memoryCollector{n: n, others: others}
}
