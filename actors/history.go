package actors

import (
	"context"
	"fmt"
	"strconv"

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
		// The cache knows a segment by its object and offset: objects hold several.
		id := s.Object + "@" + strconv.FormatInt(s.Offset, 10)
		recs, err := h.cache.ReadObject(ctx, id, objstore.Object{Store: h.store, Key: s.Object, Offset: s.Offset}, s.ZBytes, from, max(maxBytes-size, 1))
		if err != nil {
			return nil, 0, fmt.Errorf("read %s from %d: segment %s: %w", p, from, id, err)
		}
		out, size, full = segmentstore.Take(out, size, recs, from, maxBytes)
	}
	return out, hwm, nil
}
