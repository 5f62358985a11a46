package actors

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore"
)

// Stages of a produce request, as the values of streamhouse_produce_stage_seconds{stage}.
// They follow one batch: its first record waits for the batch to seal (batch_wait), the
// sealed batch waits for an upload slot (queue), is encoded (encode) and written by the
// agent's flusher (upload: waiting for a PUT slot, then the PUT of its object),
// waits for the batches before it to commit (commit_wait) and is committed (commit).
const (
	stageBatchWait  = "batch_wait"
	stageQueue      = "queue"
	stageEncode     = "encode"
	stageUpload     = "upload"
	stageCommitWait = "commit_wait"
	stageCommit     = "commit"
)

// Metrics of the partition actors, on the default Prometheus registry. Labels are bounded:
// topic, node, zone, stage and result; never a partition or an offset.
var (
	metricProduceRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_produce_requests_total",
		Help: "Produce requests answered by partitions, by result (ok, fenced, backpressure, unavailable, invalid, not_found).",
	}, []string{"topic", "result"})
	metricProduceResent = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_produce_resent_total",
		Help: "Produce requests that reached their partition again (a client re-send after an attempt timeout) and got the first attempt's outcome instead of being written again.",
	}, []string{"topic"})
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
	metricProduceStage = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "streamhouse_produce_stage_seconds",
		Help:    "Parts of produce latency per segment batch: batch_wait, queue, encode, upload, commit_wait, commit.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
	}, []string{"stage"})
	metricFetchRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_fetch_requests_total",
		Help: "Fetch requests answered by partitions, by result (ok, out_of_range, unavailable, invalid, not_found).",
	}, []string{"topic", "result"})
	metricFetchWaiting = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "streamhouse_fetch_waiting", Help: "Fetches parked at their partition's log end (long-polls) until a commit or their wait ends.",
	})
	metricHistoryReadBytes = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "streamhouse_history_read_bytes",
		Help: "Bytes the agent's partitions' reads take from the store, held until each read's answer is handed on (--max-read-bytes: a read starts once its first piece fits).",
	})
	metricHistoryReadWaits = promauto.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_history_read_waits_total",
		Help: "Reads from the store that waited to start for the agent's other reads from the store to end (--max-read-bytes; up to 5s).",
	})
	metricFetchRecords = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_fetch_records_total", Help: "Records returned to fetches.",
	}, []string{"topic"})
	metricFetchBytes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_fetch_bytes_total", Help: "Record payload bytes (key, value, headers) returned to fetches.",
	}, []string{"topic"})
	metricSegments = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_segments_uploaded_total", Help: "Segments written to the object store.",
	}, []string{"topic"})
	metricSegmentBytes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_segment_bytes_total", Help: "Bytes of uploaded segments: raw record payload, and compressed object size.",
	}, []string{"kind"})
	metricObjects = promauto.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_objects_uploaded_total", Help: "Objects written to the store; each holds the segments of one or more partitions.",
	})
	metricObjectSegments = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "streamhouse_object_segments", Help: "Segments per object written (group commit across partitions).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 10),
	})
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
	metricLeaseReleases = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_lease_releases_total", Help: "Partition leases released by a stopping partition, by result (ok, lost).",
	}, []string{"node", "result"})
	metricRebalances = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_rebalances_total",
		Help: "Rebalance episodes: this agent found partitions to take or give up, and worked until it served exactly its share.",
	}, []string{"node"})
	metricRebalanceLast = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "streamhouse_rebalance_last_duration_seconds", Help: "Duration of this agent's last completed rebalance episode.",
	}, []string{"node"})
	metricRebalanceDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "streamhouse_rebalance_duration_seconds",
		Help:    "From a rebalance episode's start (a partition to take or give up) to every owned partition served here.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
	}, []string{"node"})
	metricMembers = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "streamhouse_cluster_members", Help: "Agents in the cluster as this agent sees them.",
	}, []string{"node"})

	// Retention and merging (compactor.go).
	metricMerges = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_merges_total", Help: "Index rewrites by merges and retention, by result (ok, fenced, error).",
	}, []string{"result"})
	metricMergedSegments = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_merged_segments_total", Help: "Segments merged into larger ones.",
	}, []string{"topic"})
	metricMergedBytes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_merged_bytes_total", Help: "Bytes of the merged segments written.",
	}, []string{"topic"})
	metricRetentionSegments = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_retention_removed_segments_total", Help: "Segments taken out of the index by retention.",
	}, []string{"topic"})
	metricRetentionBytes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_retention_removed_bytes_total", Help: "Stored bytes of the segments retention removed.",
	}, []string{"topic"})
	metricIndexSegments = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "streamhouse_index_segments",
		Help: "Segment keys in etcd of the partitions this agent owns, at the last compaction pass (divide by partitions for keys per partition).",
	}, []string{"topic"})
	metricMergeMethod = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_merge_segments_built_total",
		Help: "Merged segments built, by method: encode (records decoded or in memory, encoded afresh), concat (stored blocks joined as they are).",
	}, []string{"method"})
	metricNeighbourReads = promauto.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_history_span_reads_total",
		Help: "GETs of history reads that read several adjacent pieces of one object at once: a piece and those its neighbours' readers are about to want.",
	})
	metricNeighbourPieces = promauto.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_history_span_pieces_total",
		Help: "Pieces (stored segments) read by streamhouse_history_span_reads_total.",
	})
	metricMergeReads = promauto.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_merge_reads_total",
		Help: "Ranged GETs of merges: one per object per compaction pass, for the segments no longer in memory.",
	})
	metricCompactionPass = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "streamhouse_compaction_pass_seconds", Help: "Duration of a compaction pass (retention and merges of every owned partition).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
	})
)

// How a merged segment was built, for streamhouse_merge_segments_built_total.
const (
	mergeEncode = "encode"
	mergeConcat = "concat"
	mergeLink   = "link"
)

// Outcomes of commits and rewrites, for result labels.
const (
	resultOK     = "ok"
	resultFenced = "fenced"
	resultError  = "error"
)

func init() {
	// Zero series for outcomes that may not have happened yet, so that a dashboard reads 0
	// rather than "no data".
	for _, r := range []string{resultOK, resultFenced, resultError} {
		metricCommits.WithLabelValues(r)
		metricMerges.WithLabelValues(r)
	}
	metricMergeMethod.WithLabelValues(mergeEncode)
	metricMergeMethod.WithLabelValues(mergeConcat)
	metricMergeMethod.WithLabelValues(mergeLink)
}

// resultOf names the outcome of a request for metric labels.
func resultOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, coordination.ErrFenced):
		return "fenced"
	case errors.Is(err, ErrBackpressure):
		return "backpressure"
	case errors.Is(err, ErrInvalidArgument), errors.Is(err, coordination.ErrInvalidArgument):
		return "invalid"
	case errors.Is(err, coordination.ErrOffsetOutOfRange):
		return "out_of_range"
	case errors.Is(err, coordination.ErrTopicNotFound), errors.Is(err, coordination.ErrPartitionNotFound):
		return "not_found"
	case errors.Is(err, ErrDuplicateSequence), errors.Is(err, ErrOutOfOrderSequence), errors.Is(err, ErrProducerFenced):
		return "sequence"
	case errors.Is(err, segmentstore.ErrCorrupt):
		return "data_loss"
	case errors.Is(err, ErrExpired):
		return "expired"
	default:
		return "unavailable"
	}
}
