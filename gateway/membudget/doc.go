// Package membudget holds the byte budgets an agent's client listeners share over all
// their connections: the Kafka listener's request frames read and not yet answered
// (--kafka-max-queued-bytes) and the answers to reads, gRPC and Kafka, from before a
// read until its answer is written to the client (--max-read-bytes). The partitions of
// an agent admit their reads from the store within a budget of their own of the same
// size (actors.NodeConfig.HistoryReadBytes): a read runs on after its caller gave up.
//
// A Budget admits a request when its bytes fit, or when it holds nothing (so that a
// request larger than the whole budget goes in alone), and in the order requests came:
// a request that waits holds back those after it, so that a large one is not starved by
// a stream of small ones. Once it is spent, Acquire waits until bytes are given back, so
// that clients are slowed instead of the agent's memory growing with its connections.
package membudget
