package actors

import (
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamhouse/streamhouse/segmentstore"
)

// The memory gauges report what each budget holds and its limit, as of the scrape.
func TestMemoryCollectorReportsTheBudgets(t *testing.T) {
	n := &Node{cfg: NodeConfig{CacheBytes: 3 << 20}, pending: newBudget(1 << 20), recent: newRecentCache(2 << 20),
		hist: &history{cache: segmentstore.NewCache(3 << 20)}}
	var log recentLog
	log.cache = n.recent
	log.add(&batch{records: []segmentstore.Record{{Offset: 0}}, bytes: 1000, encoded: make([]byte, 500)})
	n.pending.add(4096)
	want := `
# HELP streamhouse_memory_limit_bytes Each memory budget's limit.
# TYPE streamhouse_memory_limit_bytes gauge
streamhouse_memory_limit_bytes{budget="cache"} 3.145728e+06
streamhouse_memory_limit_bytes{budget="pending"} 1.048576e+06
streamhouse_memory_limit_bytes{budget="recent"} 2.097152e+06
# HELP streamhouse_memory_used_bytes Bytes each memory budget of the agent holds (--max-pending-bytes, --recent-bytes, --cache-bytes, --max-read-bytes).
# TYPE streamhouse_memory_used_bytes gauge
streamhouse_memory_used_bytes{budget="cache"} 0
streamhouse_memory_used_bytes{budget="pending"} 4096
streamhouse_memory_used_bytes{budget="recent"} RECENT
`
	// One record of 1000 bytes and its segment of 500.
	want = strings.Replace(want, "RECENT", strconv.FormatInt(1500+recordOverhead, 10), 1)
	if err := testutil.CollectAndCompare(n.MemoryCollector(), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	// A budget held outside the node is reported with the node's, read at the scrape.
	reads := int64(7)
	withReads := strings.Replace(want, `streamhouse_memory_limit_bytes{budget="recent"} 2.097152e+06`,
		`streamhouse_memory_limit_bytes{budget="read"} 1.6777216e+07
streamhouse_memory_limit_bytes{budget="recent"} 2.097152e+06`, 1)
	recent := `streamhouse_memory_used_bytes{budget="recent"} ` + strconv.FormatInt(1500+recordOverhead, 10)
	withReads = strings.Replace(withReads, recent, `streamhouse_memory_used_bytes{budget="read"} 9
`+recent, 1)
	c := n.MemoryCollector(MemoryBudget{Name: "read", Used: func() int64 { return reads }, Limit: 16 << 20})
	reads = 9
	if err := testutil.CollectAndCompare(c, strings.NewReader(withReads)); err != nil {
		t.Fatal(err)
	}
	// Read again at the next scrape, not kept from the first.
	n.pending.add(-4096)
	log.clear()
	want = strings.ReplaceAll(want, `{budget="pending"} 4096`, `{budget="pending"} 0`)
	want = strings.ReplaceAll(want, recent, `streamhouse_memory_used_bytes{budget="recent"} 0`)
	if err := testutil.CollectAndCompare(n.MemoryCollector(), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
