// Package chaos is the fault-injection test of the promise StreamHouse makes: an acked
// record is never lost, an offset never holds two values, whatever fails.
//
// TestChaos starts a 3-member etcd, MinIO and three agent processes (each reaching etcd
// through a proxy the test can cut), runs a workload (producers sending unique values
// with retries under the request's id and recording every ack; readers following every partition; a consumer
// group committing offsets) and injects a seeded schedule of faults: kill -9, SIGSTOP
// past the session TTL and graceful restart of an agent, kill -9 of an etcd member, a
// MinIO restart, an agent cut from etcd. The checker then reads every partition back
// and counts what must be 0 (acked but missing, two values at one offset, gaps, records
// never sent, group offsets going backwards, committed objects deleted) and what is only
// reported (duplicates from retries after an unknown outcome, unavailability per fault).
//
// CHAOS_FAULTS (default 28, four of each kind) and CHAOS_SEED (default 1) choose the run; CHAOS_KINDS
// (comma-separated words: "etcd", "SIGSTOP", "minio"...) keeps some fault kinds only;
// CHAOS_REPORT names a file for the summary table (docs/RELIABILITY.md holds the latest
// long run); CHAOS_DEBUG prints each agent's warnings after each fault.
package chaos
