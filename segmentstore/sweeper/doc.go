// Package sweeper deletes orphan objects: objects in the store that no segment of the
// index names (DESIGN.md §4). They come from uploads whose commit was fenced or failed,
// from agents that died between PUT and commit, and from segments that merges, retention
// and topic deletion took out of the index.
//
// Invariants:
//   - A committed object is never deleted: the index is read after the listing, so an
//     object listed and not indexed at that revision was not committed then, and it is
//     deleted only when it is older than the grace period, past which no agent commits a
//     segment (writers give up CommitTimeout after the PUT; MinGrace exceeds that). Its
//     age is by the store's clock, which dated it (objstore.Store.Clock, read before the
//     listing), not by the sweeping agent's, which may be minutes off. The sweeper keeps
//     no state, so a restart or another agent taking the lock changes nothing.
//   - Segments taken out of the index (merged, expired by retention, of a deleted topic)
//     leave a tombstone naming their objects, written in the same transaction; an object
//     named by a tombstone is kept the grace period from its removal too, for readers that
//     resolved the segment before. Tombstones past the grace are deleted.
//   - Each pass first removes the keys of deleted topics whose partitions have stopped
//     (coordination.Client.PurgeTopic: resumable, idempotent); their objects then go as
//     unindexed objects, a grace after the purge. A topic it cannot purge is left for the
//     next pass, and the pass goes on. A segment key it cannot decode stops the deletes:
//     the objects it names are unknown.
//   - One agent sweeps at a time (the etcd lock Keys.Lock("sweeper")); deletes are
//     idempotent, so a second sweeper after a lost lock only repeats work.
//   - The store (bucket and prefix) belongs to one cluster: objects under data/ that its
//     index does not name are taken for orphans. Never point two clusters at one prefix.
//
// Metrics: streamhouse_sweeps_total{result} (ok, error, skipped: another agent holds
// the lock), streamhouse_orphans_deleted_total and streamhouse_orphan_bytes_deleted_total,
// streamhouse_orphans_pending (unindexed objects still in their grace period at the last
// pass), streamhouse_tombstones_deleted_total, streamhouse_topics_purged_total.
package sweeper
