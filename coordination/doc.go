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
//     always a gap-free, overlap-free run of segments [log start, hwm).
//   - Only the lease holder takes segments out of its partition's index (Lease.Rewrite:
//     a merge or retention), in one transaction fenced on the epoch and guarded on the
//     run's keys being unchanged since the holder read them; a merged segment holds
//     exactly the offsets of the run it replaces. Removed objects are named by a tombstone
//     when they need one, so the orphan sweeper waits its grace from the removal.
//   - A deleted topic gets no new lease; PurgeTopic removes its keys only while none of
//     its partitions has an owner, resumably.
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
