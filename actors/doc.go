// Package actors runs partitions as protoactor-go virtual actors on a cluster of agents
// (DESIGN.md §5 and §7).
//
// Pieces:
//   - Node: an agent's membership. One etcd session, one actor system with the gRPC
//     remote, a cluster member of kind "partition", and a rebalancer.
//   - Placement and placementLookup: which member hosts each partition (rendezvous hashing
//     with bounded load per topic, so that every agent gets its share), and the identity
//     lookup that activates partitions there. It replaces protoactor-go's disthash, whose
//     plain rendezvous leaves an agent without partitions in 7.7% of 3-agent/9-partition
//     clusters, and whose placement actor mismatches terminated PIDs. Membership comes from sessionProvider, a cluster provider backed by
//     the agents' etcd sessions (not protoactor-go's etcd provider, whose 3s member TTL and
//     permanent eviction DESIGN.md §7 documents). On session loss the node leaves and
//     rejoins with a new member id; on Stop it withdraws its member record, lets its
//     partitions commit and release their leases, then leaves.
//   - partitionActor: identity "<topic>/<partition>". Acquires the partition's lease on
//     activation (its epoch), serves Produce through a writer and Fetch from memory, the
//     store, or by long-polling at the log end; on Stopping commits what it accepted and
//     releases the lease. I/O never runs on the actor's goroutine.
//   - writer: batching by linger and size (a batch keeps growing while its partition's
//     segments in flight are at MaxInFlight), commits in offset order fenced on the
//     epoch, acks only after the commit.
//   - flusher: one per agent; writes the segments of all partitions waiting for one of
//     its MaxUploads PUT slots as one object (group commit), each segment indexed at its
//     own offset, so that PUTs do not grow with the partition count.
//   - compactor: one per agent; every CompactInterval applies each owned partition's
//     retention (removes its oldest segments from the index) and merges its small
//     segments (mergeplan.go), writing the merges of all partitions of a pass as one
//     object and swapping each partition's index in one transaction fenced on its epoch.
//     It works on partitionLog, the owner's exact view of its index (loaded once, then
//     extended by its own commits and rewrites).
//   - rebalancer: activates every partition Placement assigns to this member and stops
//     local activations it does not own.
//   - Client: routes requests from any agent to any partition through the cluster, with
//     per-attempt timeouts and capped exponential backoff while partitions move.
//
// Invariants: a producer is acked only for records in a committed segment; offsets of a
// partition are assigned once (a failed upload resets to the committed end after every
// in-flight upload has finished, so no object name is reused under a racing upload); an
// actor that loses its lease commits nothing more; a merge replaces segments with one
// holding exactly their records, so a reader sees the same records before, during and
// after it; fetches below the log start answer OUT_OF_RANGE with it.
//
// All messages that cross nodes are protobuf messages of package partitionpb.
//
// Metrics (default Prometheus registry, served by the agent on /metrics; labels bounded
// to topic, node, zone, stage and result; docs/metrics.md has the full table):
//   - streamhouse_produce_requests_total{topic,result}, streamhouse_fetch_requests_total
//     {topic,result}: answers of partitions (ok, fenced, backpressure, unavailable, ...).
//   - streamhouse_produce_records_total, streamhouse_produce_bytes_total,
//     streamhouse_fetch_records_total, streamhouse_fetch_bytes_total{topic}.
//   - streamhouse_produce_latency_seconds{topic}: request reaching its partition → ack;
//     streamhouse_produce_stage_seconds{stage}: its parts per batch (batch_wait, queue,
//     encode, upload, commit_wait, commit).
//   - streamhouse_segments_uploaded_total{topic}, streamhouse_segment_bytes_total{kind}
//     (raw, compressed), streamhouse_uploads_in_flight, streamhouse_objects_uploaded_total,
//     streamhouse_object_segments (segments per object).
//   - streamhouse_commits_total{result}: ok, fenced, error.
//   - streamhouse_partitions_owned{node,zone}, streamhouse_lease_acquisitions_total{node},
//     streamhouse_lease_releases_total{node,result} (ok, lost).
//   - streamhouse_rebalances_total{node}, streamhouse_rebalance_duration_seconds{node},
//     streamhouse_rebalance_last_duration_seconds{node}, streamhouse_cluster_members{node}.
//   - streamhouse_merges_total{result}, streamhouse_merged_segments_total{topic},
//     streamhouse_merged_bytes_total{topic}, streamhouse_retention_removed_segments_total
//     {topic}, streamhouse_retention_removed_bytes_total{topic},
//     streamhouse_index_segments{topic}, streamhouse_compaction_pass_seconds.
package actors
