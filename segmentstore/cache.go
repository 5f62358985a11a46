package segmentstore

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"unsafe"
)

// Cache is a byte-bounded LRU of decoded blocks and segment footers, shared by the
// readers of an agent so that repeated reads of the same segment cost no GETs. It is safe
// for concurrent use.
type Cache struct {
	mu      sync.Mutex
	limit   int64
	bytes   int64
	lru     *list.List // of *cacheEntry, most recent first
	items   map[cacheKey]*list.Element
	loading map[string]*wholeLoad // segments being read whole, by object
}

// wholeLoad is a read of a whole segment in progress, which later readers of the same
// segment (consumers of one partition side by side) wait for rather than GET it again.
type wholeLoad struct {
	done chan struct{}
	w    *wholeSegment
	err  error
}

type cacheKey struct {
	object string
	block  int // footerBlock: the segment's footer (its Reader); wholeBlock: all of it
}

// Cache keys of a segment besides its blocks'.
const (
	footerBlock = -1 // its Reader, for segments read a range at a time
	wholeBlock  = -2 // a wholeSegment, for segments read in one GET
)

// wholeSegment is the cache entry of a segment read whole: its footer and every block
// decoded, the records of blocks stored raw aliasing the segment's bytes rather than a
// copy of them. It is one entry, accounted for those bytes, so that evicting it lets them
// go: blocks cached one by one would each pin the whole buffer.
type wholeSegment struct {
	rd     *Reader
	blocks [][]Record
}

// take returns the records with offsets ≥ from, up to maxBytes of payload.
func (w *wholeSegment) take(from int64, maxBytes int) []Record {
	var out []Record
	got, full := 0, false
	for i := w.rd.Locate(from); i < len(w.blocks) && !full; i++ {
		out, got, full = Take(out, got, w.blocks[i], from, maxBytes)
	}
	return out
}

// readWhole reads the segment of size bytes with one ranged read and decodes it; cost is
// what it holds in memory, for the cache.
func readWhole(ctx context.Context, object string, src RangeReader, size int64) (w *wholeSegment, cost int64, err error) {
	b, err := src.ReadRange(ctx, 0, size)
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", object, err)
	}
	if int64(len(b)) != size {
		return nil, 0, corrupt("segment", 0, "read %d bytes, asked for %d", len(b), size)
	}
	w = &wholeSegment{}
	if w.rd, err = OpenReader(ctx, BytesReader(b), size); err != nil {
		return nil, 0, err
	}
	w.blocks = make([][]Record, len(w.rd.index))
	cost = size
	for i, e := range w.rd.index {
		recs, inflated, err := decodeBlock(b[e.Position:e.Position+e.Length], e, true)
		if err != nil {
			return nil, 0, err
		}
		w.blocks[i] = recs
		cost += int64(inflated) + heldBeside(recs)
	}
	return w, cost, nil
}

type cacheEntry struct {
	key   cacheKey
	value any
	size  int64
}

// NewCache returns a cache holding at most limit bytes (estimated from payload sizes).
func NewCache(limit int64) *Cache {
	return &Cache{limit: limit, lru: list.New(), items: map[cacheKey]*list.Element{}, loading: map[string]*wholeLoad{}}
}

func (c *Cache) get(k cacheKey) (any, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*cacheEntry).value, true
	}
	return nil, false
}

// WholeSegmentBytes: segments up to this size are read with one GET whatever the request.
// It exceeds the segments of a busy partition (about a produce request's worth: 1.1 MB
// at the maximum rate, linked rather than copied by merges), which are then read with one
// GET each rather than one for the footer and more for the blocks.
const WholeSegmentBytes = 2 << 20

// recordOverhead is what the cache counts for a decoded record besides its payload: the
// Record itself and slice headers.
const recordOverhead = 64

// HeaderOverhead is what a decoded header holds besides its key and value, counted
// wherever decoded records are: a record of thousands of empty headers takes two bytes
// a header stored and this many decoded.
const HeaderOverhead = int64(unsafe.Sizeof(RecordHeader{}))

// heldBeside is what decoded records hold besides their payload: recordOverhead each,
// HeaderOverhead a header.
func heldBeside(recs []Record) int64 {
	n := int64(len(recs)) * recordOverhead
	for k := range recs {
		n += int64(len(recs[k].Headers)) * HeaderOverhead
	}
	return n
}

// putBlock caches the decoded records of block i of object.
func (c *Cache) putBlock(object string, i int, recs []Record) {
	sz := heldBeside(recs)
	for k := range recs {
		sz += int64(recs[k].Size())
	}
	c.put(cacheKey{object, i}, recs, sz)
}

// has reports whether k is cached, without touching its recency.
func (c *Cache) has(k cacheKey) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.items[k]
	return ok
}

func (c *Cache) put(k cacheKey, v any, size int64) {
	if c == nil || size > c.limit {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.lru.MoveToFront(e)
		return
	}
	c.items[k] = c.lru.PushFront(&cacheEntry{key: k, value: v, size: size})
	c.bytes += size
	for c.bytes > c.limit {
		e := c.lru.Back()
		ent := e.Value.(*cacheEntry)
		c.lru.Remove(e)
		delete(c.items, ent.key)
		c.bytes -= ent.size
	}
}

// Bytes is the estimated size of what the cache holds.
func (c *Cache) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// ReadObject returns records with offsets ≥ from of the segment stored as object (of size
// bytes), up to maxBytes of payload (at least one record), through the cache. A segment
// no larger than maxBytes or WholeSegmentBytes is read with one GET and cached whole;
// of a larger one, the footer and each block are fetched with ranged reads at most once
// while they stay cached, a run of missing blocks in one read.
func (c *Cache) ReadObject(ctx context.Context, object string, src RangeReader, size int64, from int64, maxBytes int) ([]Record, error) {
	if v, ok := c.get(cacheKey{object, wholeBlock}); ok {
		return v.(*wholeSegment).take(from, maxBytes), nil
	}
	var rd *Reader
	if v, ok := c.get(cacheKey{object, footerBlock}); ok {
		rd = v.(*Reader)
	} else if size <= max(int64(maxBytes), WholeSegmentBytes) {
		// Every block is decoded and cached: readers go through segments in order, so
		// the next fetch wants them.
		w, err := c.loadWhole(ctx, object, src, size)
		if err != nil {
			return nil, err
		}
		return w.take(from, maxBytes), nil
	} else {
		var err error
		if rd, err = OpenReader(ctx, src, size); err != nil {
			return nil, err
		}
		c.put(cacheKey{object, footerBlock}, rd, int64(len(rd.index))*indexEntryLen)
	}
	var out []Record
	got, full := 0, false // got: payload bytes in out (size is the object's)
	for i := rd.Locate(from); i < len(rd.index) && !full; {
		if v, ok := c.get(cacheKey{object, i}); ok {
			out, got, full = Take(out, got, v.([]Record), from, maxBytes)
			i++
			continue
		}
		// Fetch the run of uncached blocks that may be needed in one ranged read: stored
		// lengths under-count payload, so maxBytes of them cover the request.
		end, span := i, int64(0)
		for end < len(rd.index) && (end == i || span < int64(maxBytes-got)) {
			if end > i && c.has(cacheKey{object, end}) {
				break
			}
			span += rd.index[end].Length
			end++
		}
		blocks, err := rd.ReadBlocks(ctx, i, end)
		if err != nil {
			return nil, err
		}
		for j, recs := range blocks {
			c.putBlock(object, i+j, recs)
			if !full {
				out, got, full = Take(out, got, recs, from, maxBytes)
			}
		}
		i = end
	}
	return out, nil
}

// Wants reports whether the segment id (of size bytes) would be read whole and is neither
// cached whole nor being read: a segment worth reading along with a neighbour (Preload).
func (c *Cache) Wants(id string, size int64) bool {
	if c == nil || size > WholeSegmentBytes {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.busyLocked(id)
}

// HasWhole reports whether the segment id is cached whole: a read of it takes nothing
// from the store.
func (c *Cache) HasWhole(id string) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, cached := c.items[cacheKey{id, wholeBlock}]
	return cached
}

// busyLocked reports whether the segment id is cached whole or being read whole.
func (c *Cache) busyLocked(id string) bool {
	_, loading := c.loading[id]
	_, cached := c.items[cacheKey{id, wholeBlock}]
	return loading || cached
}

// endLoad ends the read l of the segment id: it caches what l read (cost bytes) and
// wakes the readers waiting for it.
func (c *Cache) endLoad(id string, l *wholeLoad, cost int64) {
	if l.err == nil {
		c.put(cacheKey{id, wholeBlock}, l.w, cost)
	}
	c.mu.Lock()
	if c.loading[id] == l {
		delete(c.loading, id)
	}
	c.mu.Unlock()
	close(l.done)
}

// Preload reads the segments ids (of sizes bytes, each one Wants) with read, which
// returns their bytes in order, and caches each whole, as loadWhole does for one:
// readers of any of them meanwhile wait for read rather than GET it. It does nothing when
// one of them is cached or being read by then; a segment read fails to decode is left
// out, for its own reader to read and report. It reports whether read ran and succeeded.
func (c *Cache) Preload(ctx context.Context, ids []string, sizes []int64, read func(context.Context) ([][]byte, error)) bool {
	if c == nil || len(ids) != len(sizes) {
		return false
	}
	c.mu.Lock()
	for _, id := range ids {
		if c.busyLocked(id) {
			c.mu.Unlock()
			return false
		}
	}
	loads := make([]*wholeLoad, len(ids))
	for i, id := range ids {
		loads[i] = &wholeLoad{done: make(chan struct{})}
		c.loading[id] = loads[i]
	}
	c.mu.Unlock()

	bufs, err := read(ctx)
	if err == nil && len(bufs) != len(ids) {
		err = fmt.Errorf("preload: read %d segments, asked for %d", len(bufs), len(ids))
	}
	for i, id := range ids {
		l, cost := loads[i], int64(0)
		if l.err = err; err == nil {
			l.w, cost, l.err = readWhole(ctx, id, BytesReader(bufs[i]), sizes[i])
		}
		c.endLoad(id, l, cost)
	}
	return err == nil
}

// testHookLoadWait, when set (by tests), is called by a reader about to wait for another
// reader's read of a whole segment.
var testHookLoadWait func()

// loadWhole reads the segment whole into the cache, or waits for a read of it already
// under way by another reader.
func (c *Cache) loadWhole(ctx context.Context, object string, src RangeReader, size int64) (*wholeSegment, error) {
	if c == nil {
		w, _, err := readWhole(ctx, object, src, size)
		return w, err
	}
	c.mu.Lock()
	if l, ok := c.loading[object]; ok {
		c.mu.Unlock()
		if testHookLoadWait != nil {
			testHookLoadWait()
		}
		select {
		case <-l.done:
			if l.err == nil {
				return l.w, nil
			}
			// Its reader's error (a context ended, maybe): try once more on ours.
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
	}
	l := &wholeLoad{done: make(chan struct{})}
	c.loading[object] = l
	c.mu.Unlock()
	var cost int64
	l.w, cost, l.err = readWhole(ctx, object, src, size)
	c.endLoad(object, l, cost)
	return l.w, l.err
}
