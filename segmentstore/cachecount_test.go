package segmentstore

import (
	"context"
	"testing"
)

// TestCacheCountsHeaders: a cached record's headers count what they hold beside their
// keys and values, whether its block is cached alone or its segment whole, so that
// records of empty headers (two bytes each stored, forty decoded) cannot fill memory
// while the cache counts them as empty.
func TestCacheCountsHeaders(t *testing.T) {
	recs := []Record{{Offset: 0, Headers: make([]RecordHeader, 1000)}}
	c := NewCache(1 << 30)
	c.putBlock("o", 0, recs)
	if got, want := c.Bytes(), 1000*HeaderOverhead; got < want {
		t.Fatalf("a block of a record of 1000 empty headers counts %d bytes in the cache, want at least %d", got, want)
	}
	data, err := Encode("t", 0, recs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, cost, err := readWhole(context.Background(), "o", BytesReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if want := 1000 * HeaderOverhead; cost < want {
		t.Fatalf("a segment of a record of 1000 empty headers, read whole, counts %d bytes, want at least %d", cost, want)
	}
}

// TestTakeCountsHeaders: a fetch's bytes count what records' headers hold, so that one
// of records of empty headers stays within its bytes; before, each counted 0 and a fetch
// took all of them, an answer past any message limit.
func TestTakeCountsHeaders(t *testing.T) {
	recs := make([]Record, 100)
	for i := range recs {
		recs[i] = Record{Offset: int64(i), Headers: make([]RecordHeader, 1000)}
	}
	out, size, full := Take(nil, 0, recs, 0, 100_000)
	if len(out) != 2 || !full || size != 2*recs[0].Counted() {
		t.Fatalf("took %d records of 1000 empty headers (%d bytes counted, full %v) within 100,000 bytes, want 2", len(out), size, full)
	}
}
