package kafka

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	metricRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_kafka_requests_total",
		Help: "Kafka protocol requests by API and result (ok, a top-level Kafka error name, unsupported, malformed).",
	}, []string{"api", "result"})
	metricRequestDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name: "streamhouse_kafka_request_duration_seconds", Help: "Kafka protocol request duration by API.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
	}, []string{"api"})
	metricProduceInFlight = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "streamhouse_kafka_produce_in_flight",
		Help: "Idempotent producers' produce requests being served, up to MaxInFlightRequests of each connection at once.",
	})
	metricReordered = promauto.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_kafka_produce_reordered_total",
		Help: "Idempotent batches that reached their partition ahead of the batch before them (their connection's previous request) and were sent again after it.",
	})
	metricBusyWaits = promauto.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_kafka_produce_backpressure_waits_total",
		Help: "Batches of Kafka produce requests that their partition refused for backpressure (the agent's --max-pending-bytes spent) and that the listener sent again after a wait, within the request's timeout.",
	})
	metricConnections = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "streamhouse_kafka_connections", Help: "Open Kafka protocol connections.",
	})
	metricQueuedBytes = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "streamhouse_kafka_queued_request_bytes",
		Help: "Bytes of Kafka request frames read and not yet answered, with what produce requests' records decode to beyond their frames, over all connections (frames are read below --kafka-max-queued-bytes; decoded records may take it to twice that).",
	})
	metricQueuedWaits = promauto.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_kafka_queued_request_waits_total",
		Help: "Kafka request frames that waited to be read until requests were answered, the listener's queued bytes having reached --kafka-max-queued-bytes.",
	})
)
