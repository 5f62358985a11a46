package actors

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics of the partition actors, on the default Prometheus registry. Labels are bounded:
// topic, node, zone and result; never a partition or an offset.
var (
	metricProduceRecords = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_produce_records_total", Help: "Records acked after their durable commit.",
	}, []string{"topic"})
	metricProduceBytes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_produce_bytes_total", Help: "Record payload bytes (key, value, headers) acked.",
	}, []string{"topic"})
	metricProduceLatency = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name: "streamhouse_produce_latency_seconds", Help: "From a produce request reaching its partition to its ack.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
	}, []string{"topic"})
	metricProduceFailed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_produce_failed_total", Help: "Produce requests a partition answered with an error, by reason.",
	}, []string{"topic", "reason"})
	metricSegments = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_segments_uploaded_total", Help: "Segments written to the object store.",
	}, []string{"topic"})
	metricSegmentBytes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_segment_bytes_total", Help: "Bytes of uploaded segments: raw record payload, and compressed object size.",
	}, []string{"kind"})
	metricUploadsInFlight = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "streamhouse_uploads_in_flight", Help: "Segment uploads running.",
	})
	metricCommits = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_commits_total", Help: "Segment commit transactions, by result (ok, fenced, error).",
	}, []string{"result"})
	metricPartitionsOwned = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "streamhouse_partitions_owned", Help: "Partitions whose lease this agent holds and serves.",
	}, []string{"node", "zone"})
	metricLeaseAcquisitions = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_lease_acquisitions_total", Help: "Partition leases acquired (each is a new epoch).",
	}, []string{"node"})
)
