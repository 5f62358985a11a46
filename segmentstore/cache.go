package segmentstore

import (
	"container/list"
	"context"
	"fmt"
	"sync"
)

// Cache is a byte-bounded LRU of decoded blocks and segment footers, shared by the
// readers of an agent so that repeated reads of the same segment cost no GETs. It is safe
// for concurrent use.
type Cache struct {
	mu    sync.Mutex
	limit int64
	bytes int64
	lru   *list.List // of *cacheEntry, most recent first
	items map[cacheKey]*list.Element
}

type cacheKey struct {
	object string
	block  int // -1: the segment's footer (its Reader)
}

type cacheEntry struct {
	key   cacheKey
	value any
	size  int64
}

// NewCache returns a cache holding at most limit bytes (estimated from payload sizes).
func NewCache(limit int64) *Cache {
	return &Cache{limit: limit, lru: list.New(), items: map[cacheKey]*list.Element{}}
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

// wholeObjectBytes: objects up to this size are read with one GET whatever the request.
// It exceeds the segments of a busy partition (about a produce request's worth: 1.1 MB
// at the maximum rate, linked rather than copied by merges), which are then read with one
// GET each rather than one for the footer and more for the blocks.
const wholeObjectBytes = 2 << 20

// putBlock caches the decoded records of block i of object.
func (c *Cache) putBlock(object string, i int, recs []Record) {
	var sz int64
	for k := range recs {
		sz += int64(recs[k].Size()) + 64
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
// bytes), up to maxBytes of payload (at least one record), through the cache: the footer
// and each block are fetched with ranged reads at most once while they stay cached, a run
// of missing blocks in one read, and an object no larger than maxBytes whole.
func (c *Cache) ReadObject(ctx context.Context, object string, src RangeReader, size int64, from int64, maxBytes int) ([]Record, error) {
	var rd *Reader
	if v, ok := c.get(cacheKey{object, -1}); ok {
		rd = v.(*Reader)
	} else {
		// A small object is fetched whole, footer and blocks in one GET, and every block
		// is cached: readers go through segments in order, so the next fetch wants them.
		local := src
		whole := size <= max(int64(maxBytes), wholeObjectBytes)
		if whole {
			b, err := src.ReadRange(ctx, 0, size)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", object, err)
			}
			local = BytesReader(b)
		}
		var err error
		if rd, err = OpenReader(ctx, local, size); err != nil {
			return nil, err
		}
		if whole && len(rd.index) > 0 {
			blocks, err := rd.ReadBlocks(ctx, 0, len(rd.index))
			if err != nil {
				return nil, err
			}
			for i, recs := range blocks {
				c.putBlock(object, i, recs)
			}
		}
		// The cached reader reads the store: the cache must not hold the whole object
		// through it. This call goes on with the bytes in hand.
		cached := *rd
		cached.src = src
		c.put(cacheKey{object, -1}, &cached, int64(len(rd.index))*indexEntryLen)
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
