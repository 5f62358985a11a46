package actors

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway/membudget"
	"github.com/streamhouse/streamhouse/segmentstore"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

// history reads committed records from the store: it needs only etcd (the segment index)
// and the store, so any agent can serve a historical read (DESIGN.md §6).
type history struct {
	c     *coordination.Client
	store objstore.Store
	cache *segmentstore.Cache
	near  *neighbours       // nil: every piece is read on its own
	reads *membudget.Budget // what reads take from the store (NodeConfig.HistoryReadBytes, readCharge)
}

// read returns records from offset from, up to maxBytes of payload (at least one record if
// any exists at or after from). It finds the segments in idx, the partition's cache of
// its index, or else reads them from etcd into it. What it reads from the store counts in
// charge (nil: nowhere).
func (h *history) read(ctx context.Context, p coordination.Partition, idx *segmentIndex, from int64, maxBytes int, charge *readCharge) ([]segmentstore.Record, error) {
	segs, ok := idx.lookup(from, indexFetch)
	if !ok {
		gen := idx.generation()
		run, _, err := h.c.Segments(ctx, p.Topic, p.Partition, from, indexRun)
		if err != nil {
			return nil, err
		}
		idx.store(run, gen)
		if h.near != nil {
			h.near.add(run)
		}
		segs = run[:min(len(run), indexFetch)]
	}
	var out []segmentstore.Record
	size, full := 0, false
	for _, s := range segs {
		for _, pc := range s.Pieces() {
			if full {
				return out, nil
			}
			if pc.Last < from {
				continue // a linked segment's parts before from
			}
			id := pieceID(pc)
			if !h.cache.HasWhole(id) {
				// Before the cache is asked: a read waiting for room must not have
				// started a load that other readers of the piece wait for. One that has
				// records already does not wait, and answers with them if refused.
				if err := charge.add(ctx, loadCost(pc.ZBytes, maxBytes-size), len(out) == 0); err != nil {
					if len(out) > 0 && errors.Is(err, ErrBackpressure) {
						return out, nil
					}
					return nil, fmt.Errorf("read %s from %d: segment %s: %w", p, from, id, err)
				}
			}
			h.readNeighbours(ctx, pc, charge)
			recs, err := h.cache.ReadObject(ctx, id, objstore.Object{Store: h.store, Key: pc.Object, Offset: pc.Offset}, pc.ZBytes, from, max(maxBytes-size, 1))
			if err != nil {
				return nil, fmt.Errorf("read %s from %d: segment %s: %w", p, from, id, err)
			}
			// The bytes left ended the piece's records before its last: the read ends
			// there, whatever the next piece's would fit (they would follow a gap).
			cut := len(recs) > 0 && recs[len(recs)-1].Offset < pc.Last
			if out == nil {
				// All of recs is at or after from and within maxBytes, and its slice
				// is the cache's answer, not the cache's own: keep it rather than copy.
				out = recs
				for i := range recs {
					size += recs[i].Counted()
				}
				full = cut || size >= maxBytes
				continue
			}
			out, size, full = segmentstore.Take(out, size, recs, from, maxBytes)
			full = full || cut || size >= maxBytes
		}
	}
	return out, nil
}

// loadCost is what reading a piece of zbytes stored bytes takes from the store with left
// bytes of the fetch left: the whole piece when the cache reads it whole
// (segmentstore.Cache.ReadObject), else about what is left, block by block.
func loadCost(zbytes int64, left int) int64 {
	if zbytes <= max(int64(left), segmentstore.WholeSegmentBytes) {
		return zbytes
	}
	return int64(left)
}

// pieceID names a piece in the cache: by its object and offset, since objects hold
// several segments, and a merge that links segments leaves them where they are, cached.
func pieceID(pc coordination.SegmentPart) string {
	return pc.Object + "@" + strconv.FormatInt(pc.Offset, 10)
}
