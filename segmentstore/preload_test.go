package segmentstore

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

// A preload of adjacent segments caches each whole from one read: their readers then read
// nothing, a reader arriving meanwhile waits for it, and a segment that does not decode
// is left to its own reader, which reports it.
func TestCachePreloadCachesEachSegmentFromOneRead(t *testing.T) {
	ctx := context.Background()
	var recs [3][]Record
	var data [3][]byte
	for i := range data {
		recs[i] = jsonRecords(50)
		for j := range recs[i] {
			recs[i][j].Offset = int64(i*50 + j)
		}
		var err error
		if data[i], err = Encode("t", int32(i), recs[i], Options{BlockSize: 4 << 10}); err != nil {
			t.Fatal(err)
		}
	}
	corrupt := append([]byte(nil), data[2]...)
	corrupt[len(corrupt)/3] ^= 0xff
	ids := []string{"obj@0", "obj@1", "obj@2"}
	sizes := []int64{int64(len(data[0])), int64(len(data[1])), int64(len(corrupt))}
	cache := NewCache(64 << 20)
	for i, id := range ids {
		if !cache.Wants(id, sizes[i]) {
			t.Fatalf("a new cache does not want %s", id)
		}
	}
	if cache.Wants("big", WholeSegmentBytes+1) {
		t.Fatal("a segment read block by block is wanted whole")
	}

	gate := make(chan struct{})
	reads := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !cache.Preload(ctx, ids, sizes, func(context.Context) ([][]byte, error) {
			reads++
			<-gate
			return [][]byte{data[0], data[1], corrupt}, nil
		}) {
			t.Error("a preload that read reported it did not")
		}
	}()
	// A reader of the second segment while the preload runs waits for it.
	waiting := make(chan struct{}, 1)
	testHookLoadWait = func() { waiting <- struct{}{} }
	t.Cleanup(func() { testHookLoadWait = nil })
	deadline := time.After(10 * time.Second)
	for cache.Wants(ids[1], sizes[1]) {
		select {
		case <-deadline:
			t.Fatal("the preload did not start")
		case <-time.After(time.Millisecond):
		}
	}
	got := make(chan []Record, 1)
	go func() {
		r, err := cache.ReadObject(ctx, ids[1], failingReader{}, sizes[1], 60, 1<<20)
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	select {
	case <-waiting:
	case <-deadline:
		t.Fatal("a reader of a segment being preloaded did not wait for it")
	}
	close(gate)
	<-done
	if r := <-got; !reflect.DeepEqual(r, recs[1][10:]) {
		t.Fatalf("the waiting reader got %d records", len(r))
	}
	if reads != 1 {
		t.Fatalf("%d reads for three segments", reads)
	}
	for i := range 2 {
		if r, err := cache.ReadObject(ctx, ids[i], failingReader{}, sizes[i], 0, 1<<20); err != nil || !reflect.DeepEqual(r, recs[i]) {
			t.Fatalf("segment %d after the preload: %d records, %v", i, len(r), err)
		}
	}
	if !cache.Wants(ids[2], sizes[2]) {
		t.Fatal("a segment that did not decode was cached")
	}
	if _, err := cache.ReadObject(ctx, ids[2], BytesReader(corrupt), sizes[2], 100, 1<<20); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("its own reader: %v, want ErrCorrupt", err)
	}
	// Nothing to do when one of them is cached already.
	if cache.Preload(ctx, ids, sizes, func(context.Context) ([][]byte, error) {
		t.Fatal("preloaded segments that are cached")
		return nil, nil
	}) {
		t.Fatal("a preload that did not read reported it did")
	}
	// A failed read caches nothing and leaves every segment wanted.
	fresh := NewCache(64 << 20)
	if fresh.Preload(ctx, ids[:2], sizes[:2], func(context.Context) ([][]byte, error) { return nil, errors.New("store down") }) {
		t.Fatal("a failed preload reported success")
	}
	if !fresh.Wants(ids[0], sizes[0]) || !fresh.Wants(ids[1], sizes[1]) {
		t.Fatal("a failed preload left a segment cached or loading")
	}
}

// failingReader fails every read: the segment must come from the cache.
type failingReader struct{}

func (failingReader) ReadRange(context.Context, int64, int64) ([]byte, error) {
	return nil, errors.New("read from the store, not the cache")
}
