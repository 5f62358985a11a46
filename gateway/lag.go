package gateway

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
)

// lagReadTimeout bounds the etcd read behind one scrape of the lag collector: a scrape
// during an etcd outage must answer (without lag) rather than hang.
const lagReadTimeout = 2 * time.Second

var lagDesc = prometheus.NewDesc("streamhouse_consumer_group_lag",
	"Records a consumer group has yet to commit on a partition: high-water mark minus committed offset. "+
		"Exported by the agent that owns the partition.",
	[]string{"group", "topic", "partition"}, nil)

// LagCollector exports streamhouse_consumer_group_lag{group,topic,partition} at scrape
// time from the groups' committed offsets in etcd and the high-water marks in the mirror.
// Each agent exports the partitions it owns, so that summing over agents counts each
// partition once; a partition between owners is briefly absent.
type LagCollector struct {
	coord  *coordination.Client
	mirror *coordination.Mirror
	node   string // "" exports every partition (one collector for a single-process cluster)
	log    *zap.Logger
}

// NewLagCollector returns a collector for the partitions node owns; register it with a
// prometheus.Registerer.
func NewLagCollector(coord *coordination.Client, mirror *coordination.Mirror, node string, log *zap.Logger) *LagCollector {
	return &LagCollector{coord: coord, mirror: mirror, node: node, log: log}
}

// Describe implements prometheus.Collector.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- lagDesc }

// Collect implements prometheus.Collector.
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), lagReadTimeout)
	defer cancel()
	groups, err := c.coord.AllOffsets(ctx)
	if err != nil {
		c.log.Debug("consumer-group lag not exported", zap.Error(err))
		return
	}
	for group, offsets := range groups {
		for p, o := range offsets {
			if c.node != "" {
				if owner, ok := c.mirror.Owner(p); !ok || owner.Node != c.node {
					continue
				}
			}
			lag := max(c.mirror.HWM(p)-o.Offset, 0)
			ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(lag),
				group, p.Topic, strconv.Itoa(int(p.Partition)))
		}
	}
}
