package actors

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

// Bounds of the neighbours directory.
const (
	// neighbourTTL: pieces named by index runs read longer ago than this are not read
	// ahead of their readers. A catch-up reader reads its next run within about a second;
	// a reader that stopped should not make others read its pieces.
	neighbourTTL = 10 * time.Second
	// neighbourObjects bounds the objects remembered (a run of 64 segments of 6
	// partitions names a few hundred).
	neighbourObjects = 4096
	// neighbourSpanBytes bounds one GET of several pieces.
	neighbourSpanBytes = 8 << 20
)

// neighbours remembers, per object, the pieces that the segment-index runs read by this
// agent's history readers name, so that a reader about to GET one piece of a flush object
// GETs with it the adjacent pieces of the same object that readers of other partitions
// are about to want (a catch-up of a topic reads all its partitions at once). MinIO reads
// whole 1 MiB blocks: a ~1.1 MB piece read alone costs it 1.66× the bytes and about twice
// the CPU per byte of a GET spanning several (docs/BENCHMARKS.md, items 23 and 24).
type neighbours struct {
	mu    sync.Mutex
	objs  map[string]*objectPieces
	order []string // objects in the order first seen, to bound objs
}

type objectPieces struct {
	seen   time.Time    // when an index run last named a piece of it
	pieces []pieceRange // sorted by offset, no duplicates
}

type pieceRange struct{ offset, bytes int64 }

func newNeighbours() *neighbours { return &neighbours{objs: map[string]*objectPieces{}} }

// add remembers the pieces of segs, read from the index for a reader.
func (n *neighbours) add(segs []coordination.SegmentMeta) {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range segs {
		for _, pc := range s.Pieces() {
			o := n.objs[pc.Object]
			if o == nil {
				o = &objectPieces{}
				n.objs[pc.Object] = o
				n.order = append(n.order, pc.Object)
			}
			o.seen = now
			i := sort.Search(len(o.pieces), func(i int) bool { return o.pieces[i].offset >= pc.Offset })
			if i < len(o.pieces) && o.pieces[i].offset == pc.Offset {
				continue
			}
			o.pieces = append(o.pieces, pieceRange{})
			copy(o.pieces[i+1:], o.pieces[i:])
			o.pieces[i] = pieceRange{pc.Offset, pc.ZBytes}
		}
	}
	for len(n.order) > neighbourObjects {
		delete(n.objs, n.order[0])
		n.order = n.order[1:]
	}
}

// span returns the run of remembered pieces of pc's object that are adjacent to pc and to
// each other and wanted (want: not cached, not being read), pc's among them, within
// neighbourSpanBytes; nil when pc would be read alone.
func (n *neighbours) span(pc coordination.SegmentPart, want func(pieceRange) bool) []pieceRange {
	n.mu.Lock()
	defer n.mu.Unlock()
	o := n.objs[pc.Object]
	if o == nil || time.Since(o.seen) > neighbourTTL {
		return nil
	}
	i := sort.Search(len(o.pieces), func(i int) bool { return o.pieces[i].offset >= pc.Offset })
	if i == len(o.pieces) || o.pieces[i] != (pieceRange{pc.Offset, pc.ZBytes}) {
		return nil
	}
	lo, hi, total := i, i+1, pc.ZBytes
	for lo > 0 {
		p := o.pieces[lo-1]
		if p.offset+p.bytes != o.pieces[lo].offset || total+p.bytes > neighbourSpanBytes || !want(p) {
			break
		}
		lo, total = lo-1, total+p.bytes
	}
	for hi < len(o.pieces) {
		p, prev := o.pieces[hi], o.pieces[hi-1]
		if prev.offset+prev.bytes != p.offset || total+p.bytes > neighbourSpanBytes || !want(p) {
			break
		}
		hi, total = hi+1, total+p.bytes
	}
	if hi-lo < 2 {
		return nil
	}
	return append([]pieceRange(nil), o.pieces[lo:hi]...)
}

// readNeighbours, before the cache reads piece pc on its own, reads it together with its
// wanted neighbours into the cache with one GET, when there are any. Errors are left to
// the readers: each piece that did not make it into the cache is read by its own reader,
// which reports what fails.
func (h *history) readNeighbours(ctx context.Context, pc coordination.SegmentPart, charge *readCharge) {
	if h.near == nil || !h.cache.Wants(pieceID(pc), pc.ZBytes) {
		return
	}
	span := h.near.span(pc, func(p pieceRange) bool {
		return h.cache.Wants(pieceID(coordination.SegmentPart{Object: pc.Object, Offset: p.offset}), p.bytes)
	})
	if span == nil {
		return
	}
	ids := make([]string, len(span))
	sizes := make([]int64, len(span))
	spanBytes := int64(0)
	for i, p := range span {
		ids[i] = pieceID(coordination.SegmentPart{Object: pc.Object, Offset: p.offset})
		sizes[i] = p.bytes
		spanBytes += p.bytes
	}
	// The read was charged its own piece already: the others count without waiting.
	if err := charge.add(ctx, spanBytes-pc.ZBytes, false); err != nil {
		return
	}
	if h.cache.Preload(ctx, ids, sizes, func(ctx context.Context) ([][]byte, error) {
		return objstore.GetParts(ctx, h.store, pc.Object, span[0].offset, sizes)
	}) {
		metricNeighbourReads.Inc()
		metricNeighbourPieces.Add(float64(len(span)))
	}
}
