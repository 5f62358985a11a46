// Package gateway is the client-facing gRPC API (streamhouse.v1, streamhousepb/) that
// every agent serves (DESIGN.md §8): admin (topics, cluster status), data (produce, fetch,
// subscribe) and consumer-group calls. Any agent accepts any request: produce and fetch go
// to the partition's owner through actors.Client, which retries with backoff while a
// partition moves; metadata calls go to etcd through coordination.
//
// Keyed records are partitioned with Kafka's murmur2 (PartitionForKey), so a key lands on
// the partition a Kafka producer would choose; records with neither key nor partition go to
// one partition per request, the next one each request.
//
// Every refusal is a gRPC status a client can act on (see streamhousepb/streamhouse.proto)
// and writes nothing: names, sizes and offsets are checked before anything is sent to a
// partition; but a Produce spread over partitions that one of them refuses (backpressure,
// a move) may have been written to the others, which its error names. Limits has the
// request bounds and their defaults.
//
// Metrics: Interceptors count and time every call (streamhouse_requests_total{method,code},
// streamhouse_request_duration_seconds{method}); LagCollector exports
// streamhouse_consumer_group_lag{group,topic,partition} for the partitions an agent owns.
package gateway
