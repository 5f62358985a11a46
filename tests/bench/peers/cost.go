package main

import (
	"context"
	"fmt"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/streamhouse/streamhouse/segmentstore/sweeper"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// sample is one scrape of an agent's /metrics.
type sample map[string]*dto.MetricFamily

func scrape(url string) (sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := harness.GetOK(ctx, url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	return fams, nil
}

// matching returns the metrics of name whose labels include every given pair.
func (s sample) matching(name string, labels ...string) []*dto.Metric {
	var out []*dto.Metric
	f := s[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}
			if !found {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// sum adds the counters (or gauges, or histograms' counts) of name whose labels include
// every given pair.
func (s sample) sum(name string, labels ...string) float64 {
	total := 0.0
	for _, m := range s.matching(name, labels...) {
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// byLabel sums the counters of name by the value of their label.
func (s sample) byLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range s.matching(name) {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// etcdWrites counts the agent's etcd calls that went through etcd's raft log and
// succeeded (streamhouse_etcd_writes_total): each a write of etcd's log and its fsync. A
// read-only transaction (an index lookup) or a call that failed is not one.
func (s sample) etcdWrites() float64 { return s.sum("streamhouse_etcd_writes_total") }

// costModel holds the counts that make a bill: store requests per GiB and per
// partition-hour, object sizes and etcd writes, at the maximum rate, at the latency
// phase's rate and idle.
type costModel struct {
	// MaxRate: the max-rate produce phase until the merges it caused were done.
	MaxRate loadCost `json:"max_rate"`
	// LatencyRate: the latency phase (-rate records/s on 6 partitions, one record a
	// request) until its merges were done: what a partition costs at a modest rate.
	LatencyRate      loadCost `json:"latency_rate"`
	GetsPerGiBRead   float64  `json:"gets_per_gib_read"`
	MeanSegmentBytes float64  `json:"mean_segment_bytes"`
	CompressionRatio float64  `json:"compression_ratio"`
	// Idle: requests per partition-hour with nothing produced or read.
	PutsPerPartitionHourIdle  float64 `json:"puts_per_partition_hour_idle"`
	GetsPerPartitionHourIdle  float64 `json:"gets_per_partition_hour_idle"`
	EtcdWritesPerPartHourIdle float64 `json:"etcd_writes_per_partition_hour_idle"`
	IdlePartitions            float64 `json:"idle_partitions"` // what the idle figures are per
	// The orphan sweeper's, which one agent of a cluster makes whatever the load: sweeps
	// over the agent's whole run, the LISTs each made (one per 1000 objects), and sweeps
	// per hour at the default interval (a quarter of the default grace).
	Sweeps        float64 `json:"sweeps"`
	ListsPerSweep float64 `json:"lists_per_sweep"`
	SweepsPerHour float64 `json:"sweeps_per_hour"`
}

// loadCost is what a produce phase asked of the store and etcd, merges included, per GiB
// of records written and per partition-hour of the phase.
type loadCost struct {
	RecordsPerSec        float64 `json:"records_per_sec"`
	PutsPerGiBWritten    float64 `json:"puts_per_gib_written"`
	GetsPerGiBWritten    float64 `json:"gets_per_gib_written"` // merges reading segments back
	MeanObjectBytes      float64 `json:"mean_flush_object_bytes"`
	PutsPerPartitionHour float64 `json:"puts_per_partition_hour"`
	GetsPerPartitionHour float64 `json:"gets_per_partition_hour"`
	EtcdWritesPerSecPart float64 `json:"etcd_writes_per_sec_per_partition"`
}

// gib is the unit of the cost model's per-volume counts.
const gib = 1 << 30

// readOps are the store requests that read an object.
var readOps = []string{"get", "get_range", "head"}

// requests counts the store requests of ops between two scrapes (successful PUTs only:
// a retried one is billed once per attempt, but a failed one wrote nothing to count).
func requests(before, after sample, ops ...string) float64 {
	n := 0.0
	for _, op := range ops {
		labels := []string{"op", op}
		if op == "put" {
			labels = append(labels, "result", "ok")
		}
		n += after.sum("streamhouse_store_requests_total", labels...) - before.sum("streamhouse_store_requests_total", labels...)
	}
	return n
}

// loadCostOf returns the cost of the records produced between two scrapes over a phase of
// seconds on partitions, the second scrape taken once the phase's merges were done.
func loadCostOf(before, after sample, produced sideReport, seconds, partitions float64) loadCost {
	c := loadCost{RecordsPerSec: produced.RecordsPerSec, MeanObjectBytes: meanFlushObject(before, after)}
	puts, gets := requests(before, after, "put"), requests(before, after, readOps...)
	if raw := after.sum("streamhouse_segment_bytes_total", "kind", "raw") - before.sum("streamhouse_segment_bytes_total", "kind", "raw"); raw > 0 {
		c.PutsPerGiBWritten, c.GetsPerGiBWritten = puts/(raw/gib), gets/(raw/gib)
	}
	if seconds > 0 {
		perHour := 3600 / seconds / partitions
		c.PutsPerPartitionHour, c.GetsPerPartitionHour = puts*perHour, gets*perHour
		c.EtcdWritesPerSecPart = (after.etcdWrites() - before.etcdWrites()) / seconds / partitions
	}
	return c
}

func newCostModel(before, written, read sample, produce, consume benchReport, partitions float64) costModel {
	var c costModel
	if produce.Produce != nil {
		c.MaxRate = loadCostOf(before, written, *produce.Produce, produce.Seconds, partitions)
	}
	rawWritten := written.sum("streamhouse_segment_bytes_total", "kind", "raw") - before.sum("streamhouse_segment_bytes_total", "kind", "raw")
	if stored := written.sum("streamhouse_segment_bytes_total", "kind", "compressed") - before.sum("streamhouse_segment_bytes_total", "kind", "compressed"); stored > 0 {
		c.CompressionRatio = rawWritten / stored
	}
	c.MeanSegmentBytes = shapeOf(before, written).MeanSegmentBytes
	if consume.Consume != nil && consume.Consume.Bytes > 0 {
		c.GetsPerGiBRead = requests(written, read, readOps...) / (float64(consume.Consume.Bytes) / gib)
	}
	return c
}

// idleCosts sets the idle figures per partition-hour from two scrapes idle apart: store
// requests, and the agent's etcd writes less lockWrites (the sweeper's lock, a cost of
// the cluster: Sweeps), over the partitions the agent owned (the Kafka phase's too when
// it ran first).
func (c *costModel) idleCosts(read, idled sample, lockWrites int, idle time.Duration) {
	c.IdlePartitions = idled.sum("streamhouse_partitions_owned")
	perHour := 3600 / idle.Seconds() / max(c.IdlePartitions, 1)
	c.PutsPerPartitionHourIdle = requests(read, idled, "put") * perHour
	c.GetsPerPartitionHourIdle = requests(read, idled, readOps...) * perHour
	c.EtcdWritesPerPartHourIdle = max(idled.etcdWrites()-read.etcdWrites()-float64(lockWrites), 0) * perHour
}

// countSweeps sets the sweeper's counts from the agent's counters at the end of its run
// (a sweep every 2.5 min or so: too rare for one phase), the only caller of LIST.
func (c *costModel) countSweeps(last sample) {
	c.Sweeps = last.sum("streamhouse_sweeps_total", "result", "ok")
	if c.Sweeps > 0 {
		c.ListsPerSweep = last.sum("streamhouse_store_requests_total", "op", "list") / c.Sweeps
	}
	c.SweepsPerHour = float64(time.Hour) / float64(sweeper.DefaultGrace/4)
}

// writeShape is what a phase's writes were made of: segments of what size, and how many
// bytes merges wrote per byte of them (0 when merges linked them where they lay).
type writeShape struct {
	MeanSegmentBytes   float64 `json:"mean_segment_bytes"`
	MeanObjectBytes    float64 `json:"mean_flush_object_bytes"`
	PutsPerGiB         float64 `json:"puts_per_gib_stored"` // merges' included
	MergeAmplification float64 `json:"merge_bytes_per_segment_byte"`
}

// shapeOf returns the writeShape of the writes between two scrapes, the merges they
// caused done by the second.
func shapeOf(before, after sample) writeShape {
	var w writeShape
	stored := after.sum("streamhouse_segment_bytes_total", "kind", "compressed") - before.sum("streamhouse_segment_bytes_total", "kind", "compressed")
	segments := after.sum("streamhouse_segments_uploaded_total") - before.sum("streamhouse_segments_uploaded_total")
	if stored > 0 && segments > 0 {
		w.MeanSegmentBytes = stored / segments
		w.MergeAmplification = (after.sum("streamhouse_merged_bytes_total") - before.sum("streamhouse_merged_bytes_total")) / stored
		w.PutsPerGiB = requests(before, after, "put") / (stored / gib)
	}
	w.MeanObjectBytes = meanFlushObject(before, after)
	return w
}

// meanFlushObject is the mean size of the objects the flusher wrote between two scrapes
// (merges write others, of up to 32 MiB of input).
func meanFlushObject(before, after sample) float64 {
	flushes := after.sum("streamhouse_object_segments") - before.sum("streamhouse_object_segments")
	if flushes == 0 {
		return 0
	}
	return (after.sum("streamhouse_segment_bytes_total", "kind", "compressed") - before.sum("streamhouse_segment_bytes_total", "kind", "compressed")) / flushes
}

// histogram is the first histogram of name whose labels include every given pair, or nil.
func (s sample) histogram(name string, labels ...string) *dto.Histogram {
	if ms := s.matching(name, labels...); len(ms) > 0 {
		return ms[0].GetHistogram()
	}
	return nil
}
