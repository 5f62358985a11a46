package sweeper

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Results of a sweep, the values of streamhouse_sweeps_total's result label.
const (
	resultOK      = "ok"
	resultError   = "error"
	resultSkipped = "skipped"
)

var (
	metricSweeps = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_sweeps_total",
		Help: "Orphan sweeps by result: ok, error, skipped (another agent holds the sweeper lock).",
	}, []string{"result"})
	metricOrphansDeleted = promauto.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_orphans_deleted_total",
		Help: "Objects deleted by the sweeper because no segment of the index names them (orphans of failed writes, and objects merged away, expired or of deleted topics).",
	})
	metricOrphanBytes = promauto.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_orphan_bytes_deleted_total",
		Help: "Bytes of the objects deleted by the sweeper.",
	})
	metricOrphansPending = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "streamhouse_orphans_pending",
		Help: "Unindexed objects in their grace period at the last sweep.",
	})
	metricTombstonesDeleted = promauto.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_tombstones_deleted_total",
		Help: "Tombstones (records of segments taken out of the index) deleted once past the grace period.",
	})
	metricTopicsPurged = promauto.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_topics_purged_total",
		Help: "Deleted topics whose keys the sweeper removed.",
	})
)

func init() {
	for _, r := range []string{resultOK, resultError, resultSkipped} {
		metricSweeps.WithLabelValues(r)
	}
}
