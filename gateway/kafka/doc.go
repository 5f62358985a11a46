// Package kafka serves the Kafka wire protocol on every agent, so that existing Kafka
// clients, tools and connectors work unchanged (see docs/kafka.md).
//
// Every agent is a broker for every partition, as in WarpStream: a produce or fetch for a
// partition goes to its owner through actors.Client, exactly like the gRPC gateway, so
// Metadata may name any agent as a partition's leader. It names the owner when the owner is
// among the brokers the client is given, so that most requests take no extra hop, and
// gives zone-aware clients (client.id "...streamhouse_zone=<zone>..." or a Fetch rack id)
// the agents of their zone.
//
// Requests and responses are encoded with github.com/twmb/franz-go/pkg/kmsg; this package
// reads the frame and the request header, and maps Kafka's APIs onto StreamHouse:
// topics and consumer-group offsets live in etcd (coordination), records in partitions
// (actors). Consumer groups are coordinated, Kafka's classic protocol, by one agent per
// group (rendezvous hashing over the live agents); the group's membership lives in that
// agent's memory and is rebuilt by the members rejoining when it moves, while committed
// offsets are in etcd and survive anything. Idempotent producers get a producer id from
// etcd, and each partition checks their sequence numbers (actors), so a retried batch is
// acked once with its first offsets and never written twice.
//
// A request this package does not serve is answered, never dropped: an unknown API key or
// an unsupported version gets UNSUPPORTED_VERSION, a known API without a handler gets its
// response with UNSUPPORTED_VERSION in its error codes. A frame that cannot be parsed
// closes only its connection.
//
// A connection's responses go out in the order of its requests. An idempotent producer's
// produce requests are served concurrently, a few at a time (pipeline.go), since each
// waits for its commit; every other request is served alone, after those before it.
//
// Metrics: streamhouse_kafka_requests_total{api,result},
// streamhouse_kafka_request_duration_seconds{api}, streamhouse_kafka_connections,
// streamhouse_kafka_produce_in_flight, streamhouse_kafka_produce_reordered_total.
package kafka
