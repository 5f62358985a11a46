package coordination

import "time"

// NodeInfo describes an agent: its stable name, the address other agents and clients reach
// it at, and its zone. It is the value of its node key and of every lease it holds.
type NodeInfo struct {
	Node string `json:"node"`
	Addr string `json:"addr"`
	Zone string `json:"zone,omitempty"`
	// Kafka is the host:port Kafka clients dial for this agent; empty when its Kafka
	// listener is off.
	Kafka string `json:"kafka,omitempty"`
}

// nodeValue is stored under /nodes/<node>.
type nodeValue struct {
	NodeInfo
	StartedAt time.Time `json:"started_at"`
}

// LeaseValue is stored under /leases/<topic>/<partition>.
type LeaseValue struct {
	NodeInfo
	AcquiredAt time.Time `json:"acquired_at"`
}

// SegmentMeta is the index entry of a committed segment, /segments/<t>/<p>/<base>.
type SegmentMeta struct {
	Object  string `json:"object"`           // object-store key
	Offset  int64  `json:"offset,omitempty"` // where the segment starts in the object
	Base    int64  `json:"base"`             // first offset
	Last    int64  `json:"last"`             // last offset
	Records int64  `json:"records"`          // record count (last-base+1 unless compacted)
	Bytes   int64  `json:"bytes"`            // record payload bytes, uncompressed
	ZBytes  int64  `json:"zbytes"`           // segment size: bytes [Offset, Offset+ZBytes) of the object
	MinTs   int64  `json:"min_ts"`           // ms since the Unix epoch
	MaxTs   int64  `json:"max_ts"`
	Epoch   int64  `json:"epoch"` // epoch of the writer that committed it
	// WrittenMs is when its records were written (the newest of them, for a merged
	// segment), ms since the Unix epoch by the agent's clock: retention by time counts
	// from it. 0 in segments written before it existed (retention then uses MaxTs).
	WrittenMs int64 `json:"written_ms,omitempty"`
}

// GroupOffset is a consumer group's committed position in one partition: the next
// offset the group will read.
type GroupOffset struct {
	Offset      int64     `json:"offset"`
	Metadata    string    `json:"metadata"`
	CommittedAt time.Time `json:"committed_at"`
}

// Tombstone is stored under /tombstones/<topic>/<partition>/<id> when segments leave the
// index: the objects they named stay readable until RemovedAt plus the sweeper's grace.
type Tombstone struct {
	Objects   []string  `json:"objects"`
	RemovedAt time.Time `json:"removed_at"`
	Reason    string    `json:"reason"` // RemovedByMerge, RemovedByRetention, RemovedByDelete
}

// Tombstone reasons.
const (
	RemovedByMerge     = "merge"
	RemovedByRetention = "retention"
	RemovedByDelete    = "topic deleted"
)
