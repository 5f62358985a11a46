package actors

import (
	"sync"

	"github.com/streamhouse/streamhouse/coordination"
)

// indexRun is how many segment metas a fetch that misses the index cache reads from etcd
// (and caches); indexFetch is how many one fetch uses at most.
const (
	indexRun   = 64
	indexFetch = 8
	// indexPieces bounds the stored segments a cached run names (a linked segment names
	// up to maxLinkParts): what a partition's cache holds, ~150 KiB at most.
	indexPieces = 1024
)

// segmentIndex caches one run of a partition's committed segment index, so that a
// reader going through history does not read etcd for every fetch: a fetch that misses
// reads the next indexRun segments and the following fetches find them here. A
// committed segment's meta never changes, so a cached one stays true; whatever takes
// segments out of the index (retention, compaction) must reset the cache of the
// partition. Safe for concurrent use (fetches read history on goroutines of their own).
type segmentIndex struct {
	mu   sync.Mutex
	segs []coordination.SegmentMeta // contiguous: each starts where the previous ends
	// gen counts resets: a run read from etcd before a reset may hold segments taken out
	// of the index since, and is not stored.
	gen uint64
}

// lookup returns up to n cached segments from the one holding offset from.
func (x *segmentIndex) lookup(from int64, n int) ([]coordination.SegmentMeta, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.segs) == 0 || from < x.segs[0].Base || from > x.segs[len(x.segs)-1].Last {
		return nil, false
	}
	// Segments are contiguous and sorted: find the one holding from.
	lo, hi := 0, len(x.segs)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if x.segs[mid].Base <= from {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	end := min(lo+n, len(x.segs))
	return append([]coordination.SegmentMeta(nil), x.segs[lo:end]...), true
}

// generation is the number of resets so far; read it before reading the index from etcd.
func (x *segmentIndex) generation() uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.gen
}

// store replaces the cached run with segs (as coordination.Segments returns them:
// contiguous, in offset order), read from etcd after generation returned gen, unless the
// cache was reset since.
func (x *segmentIndex) store(segs []coordination.SegmentMeta, gen uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if gen != x.gen {
		return
	}
	n, pieces := 0, 0
	for n < len(segs) && (n == 0 || pieces+max(len(segs[n].Parts), 1) <= indexPieces) {
		pieces += max(len(segs[n].Parts), 1)
		n++
	}
	x.segs = append(x.segs[:0:0], segs[:n]...)
	for i := range x.segs {
		x.segs[i].Requests = nil // a reader has no use for them
	}
}

// reset forgets everything (segments were taken out of the index).
func (x *segmentIndex) reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.segs = nil
	x.gen++
}
