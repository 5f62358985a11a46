package segmentstore

import "testing"

// TestCacheCountsHeaders: a cached record's headers count what they hold beside their
// keys and values, so that blocks of records of empty headers cannot fill memory while
// the cache counts them as empty.
func TestCacheCountsHeaders(t *testing.T) {
	c := NewCache(1 << 30)
	c.putBlock("o", 0, []Record{{Headers: make([]RecordHeader, 1000)}})
	if got, want := c.Bytes(), 1000*headerOverhead; got < want {
		t.Fatalf("a record of 1000 empty headers counts %d bytes in the cache, want at least %d", got, want)
	}
}
