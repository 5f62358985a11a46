package actors

import (
	"context"
	"fmt"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

// history reads committed records from the store: it needs only etcd (the segment index)
// and the store, so any agent can serve a historical read (DESIGN.md §6).
type history struct {
	c     *coordination.Client
	store objstore.Store
	cache *segmentstore.Cache
}

// read returns records from offset from, up to maxBytes of payload (at least one record if
// any exists at or after from), and the high-water mark it read them under.
func (h *history) read(ctx context.Context, p coordination.Partition, from int64, maxBytes int) ([]segmentstore.Record, int64, error) {
	segs, hwm, err := h.c.Segments(ctx, p.Topic, p.Partition, from, 8)
	if err != nil {
		return nil, 0, err
	}
	var out []segmentstore.Record
	size, full := 0, false
	for _, s := range segs {
		if full {
			break
		}
		recs, err := h.cache.ReadObject(ctx, s.Object, objstore.Object{Store: h.store, Key: s.Object}, s.ZBytes, from, max(maxBytes-size, 1))
		if err != nil {
			return nil, 0, fmt.Errorf("read %s from %d: segment %s: %w", p, from, s.Object, err)
		}
		out, size, full = segmentstore.Take(out, size, recs, from, maxBytes)
	}
	return out, hwm, nil
}
