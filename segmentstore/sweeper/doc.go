// Package sweeper deletes orphan objects: objects in the store that no segment of the
// index names (DESIGN.md §4). They come from uploads whose commit was fenced or failed,
// from agents that died between PUT and commit, and later from segments taken out of
// the index by retention.
//
// Invariants:
//   - A committed object is never deleted: the index is read after the listing, so an
//     object listed and not indexed at that revision was not committed then, and an
//     object is deleted only when it is older than the grace period (no agent commits a
//     segment later than its upload and commit timeouts after the PUT) and has been seen
//     unindexed by this sweeper for the grace period (a reader that resolved it before it
//     left the index has had that long to finish).
//   - One agent sweeps at a time (the etcd lock Keys.Lock("sweeper")); deletes are
//     idempotent, so a second sweeper after a lost lock only repeats work.
//   - The store (bucket and prefix) belongs to one cluster: objects under data/ that its
//     index does not name are taken for orphans. Never point two clusters at one prefix.
//
// Metrics: streamhouse_sweeps_total{result} (ok, error, skipped: another agent holds
// the lock), streamhouse_orphans_deleted_total and streamhouse_orphan_bytes_deleted_total,
// streamhouse_orphans_pending (unindexed objects still in their grace period at the last
// pass).
package sweeper
