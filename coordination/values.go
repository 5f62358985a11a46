package coordination

import (
	"errors"
	"fmt"
	"time"
)

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
//
// A segment is either stored, bytes [Offset, Offset+ZBytes) of Object, or linked: a merge
// that rewrote no bytes lists the stored segments it is made of in Parts (Object empty),
// in offset order, each a whole segment as written (Pieces).
type SegmentMeta struct {
	Object  string `json:"object,omitempty"` // object-store key; empty when linked
	Offset  int64  `json:"offset,omitempty"` // where the segment starts in the object
	Base    int64  `json:"base"`             // first offset
	Last    int64  `json:"last"`             // last offset
	Records int64  `json:"records"`          // record count (last-base+1 unless compacted)
	Bytes   int64  `json:"bytes"`            // record payload bytes, uncompressed
	ZBytes  int64  `json:"zbytes"`           // stored size: bytes [Offset, Offset+ZBytes) of the object, or the sum of Parts'
	// Parts are the stored segments of a linked segment, oldest first; nil otherwise.
	Parts []SegmentPart `json:"parts,omitempty"`
	MinTs int64         `json:"min_ts"` // ms since the Unix epoch
	MaxTs int64         `json:"max_ts"`
	Epoch int64         `json:"epoch"` // epoch of the writer that committed it
	// WrittenMs is when its records were written (the newest of them, for a merged
	// segment), ms since the Unix epoch by the agent's clock: retention by time counts
	// from it. 0 in segments written before it existed (retention then uses MaxTs).
	WrittenMs int64 `json:"written_ms,omitempty"`
	// Requests are the produce requests whose records end in it, by the id their sender
	// gave them: a partition's next owner learns from them which requests are written,
	// and answers a re-send of one with its offsets instead of writing it again: every
	// one (a segment is sealed at maxSegmentRequests, actors); in a merged segment, the
	// newest maxSegmentRequests of those of its segments written within a minute of the
	// partition's last segment (by their writers' clocks). Nil in segments written before
	// it existed.
	Requests []RequestRef `json:"requests,omitempty"`
}

// RequestRef is a written produce request: its id, and its records' offsets
// [Base, Base+Count).
type RequestRef struct {
	ID    uint64 `json:"id,string"` // a string: JSON readers such as jq round integers past 2^53
	Base  int64  `json:"base"`
	Count int32  `json:"count"`
}

// SegmentPart is one stored segment of a linked segment: bytes [Offset, Offset+ZBytes)
// of Object, holding offsets [Base, Last].
type SegmentPart struct {
	Object  string `json:"object"`
	Offset  int64  `json:"offset,omitempty"`
	ZBytes  int64  `json:"zbytes"`
	Base    int64  `json:"base"`
	Last    int64  `json:"last"`
	Records int64  `json:"records"`
	Bytes   int64  `json:"bytes"`
}

// Pieces returns the stored segments m is made of: its Parts when it is linked, or m
// itself.
func (m *SegmentMeta) Pieces() []SegmentPart {
	if len(m.Parts) > 0 {
		return m.Parts
	}
	return []SegmentPart{{Object: m.Object, Offset: m.Offset, ZBytes: m.ZBytes, Base: m.Base, Last: m.Last, Records: m.Records, Bytes: m.Bytes}}
}

// Objects returns the objects m's bytes are in, each once.
func (m *SegmentMeta) Objects() []string { return ObjectsOf([]SegmentMeta{*m}) }

// ObjectsOf returns the objects the bytes of segs are in, each once, in the order they
// are first named: what a tombstone of segs lists.
func ObjectsOf(segs []SegmentMeta) []string {
	var out []string
	eachObject(segs, func(_ int, object string) bool {
		out = append(out, object)
		return true
	})
	return out
}

// eachObject calls fn with each object the bytes of segs are in, once, in the order
// they are first named, and the index of the segment that names it first, until fn
// returns false.
func eachObject(segs []SegmentMeta, fn func(seg int, object string) bool) {
	seen := map[string]bool{}
	for i := range segs {
		for _, p := range segs[i].Pieces() {
			if !seen[p.Object] {
				seen[p.Object] = true
				if !fn(i, p.Object) {
					return
				}
			}
		}
	}
}

// MaxTombstoneBytes bounds the object names of one tombstone, within etcd's default
// request size (--max-request-bytes, 1.5 MiB) with room for the rest of its
// transaction: a run of segments taken out of the index names up to 128 pieces per
// linked segment, most in objects of their own, so a retention run or purge page of a
// large partition could otherwise make a transaction etcd refuses every time.
const MaxTombstoneBytes = 512 << 10

// SegmentsWithinTombstone returns how many of the leading segs one tombstone can name
// the objects of within MaxTombstoneBytes: at least one, so that every run moves.
func SegmentsWithinTombstone(segs []SegmentMeta) int {
	n, size := len(segs), 0
	eachObject(segs, func(seg int, object string) bool {
		size += len(object) + len(`"",`) // as the tombstone's JSON lists it
		if size > MaxTombstoneBytes && seg > 0 {
			n = seg
			return false
		}
		return true
	})
	return n
}

// check reports what makes m an impossible index entry: a stored segment without an
// object, or parts that are not exactly its offsets and bytes.
func (m *SegmentMeta) check() error {
	if len(m.Parts) == 0 {
		if m.Object == "" {
			return errors.New("no object")
		}
		return nil
	}
	if m.Object != "" {
		return errors.New("both an object and parts")
	}
	next, zbytes := m.Base, int64(0)
	for i, p := range m.Parts {
		if p.Object == "" || p.Base != next || p.Last < p.Base || p.ZBytes <= 0 || p.Offset < 0 || p.Records < 1 {
			return fmt.Errorf("part %d (%s at %d, [%d, %d], %d bytes, %d records) does not follow offset %d", i, p.Object, p.Offset, p.Base, p.Last, p.ZBytes, p.Records, next-1)
		}
		next, zbytes = p.Last+1, zbytes+p.ZBytes
	}
	if next != m.Last+1 || zbytes != m.ZBytes {
		return fmt.Errorf("parts hold [%d, %d] in %d bytes, the segment [%d, %d] in %d", m.Base, next-1, zbytes, m.Base, m.Last, m.ZBytes)
	}
	return nil
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
