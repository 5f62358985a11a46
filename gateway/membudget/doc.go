// Package membudget holds the byte budgets an agent's client listeners share over all
// their connections: the Kafka listener's request frames read and not yet answered
// (--kafka-max-queued-bytes) and the answers to reads, gRPC and Kafka, from before a
// read until its answer is written to the client (--max-read-bytes).
//
// A Budget admits bytes whenever some of it is left, as Kafka's memory pool for
// queued.max.request.bytes does: what it holds exceeds its limit by less than one
// request, and a request larger than the whole budget, or one that comes while small
// ones hold a little of it, is never starved. Once it is spent, Acquire waits until
// bytes are given back, so that clients are slowed instead of the agent's memory growing
// with its connections.
package membudget
