// Package coordination keeps a StreamHouse cluster's metadata in etcd and is the safety
// core of the platform (DESIGN.md §3–4).
//
// What it holds, under one root prefix (keys.go documents every key with an example):
// topic specs, partition leases, high-water marks, the segment index, consumer-group
// offsets and the live nodes. Values are JSON, so `etcdctl get --prefix /streamhouse/`
// is readable; docs/operations.md shows an operator's view.
//
// Invariants:
//   - A partition is written only by the holder of its lease key, which is attached to the
//     holder's session lease. The key's CreateRevision is the partition's epoch; it grows
//     with every new owner.
//   - Every write on behalf of a partition (Lease.Commit) is one transaction guarded on the
//     epoch and on the expected high-water mark. A writer that was paused, cut off or
//     replaced gets ErrFenced and writes nothing, so the committed log of a partition is
//     always a gap-free, overlap-free run of segments [0, hwm).
//   - The high-water mark only grows; offsets in the index are 20-digit zero padded so that
//     key order is offset order.
//   - Nobody deletes another node's lease: a contender waits for release or expiry.
//   - A bad request (names, counts, offsets) returns ErrInvalidArgument or a more specific
//     error and writes nothing.
//
// Readers use a Mirror (a watched, decoded Keyspace of topics, leases, hwm and nodes)
// rather than ad-hoc Gets; WaitForRevision lets a writer wait until its own write is
// visible.
//
// Metrics: DialOptions instrument the etcd client, counting every call by method and code
// (streamhouse_etcd_requests_total{method,code}) and timing unary calls
// (streamhouse_etcd_request_duration_seconds{method}); agents count commits, fenced
// commits and lease acquisitions around this package.
package coordination
