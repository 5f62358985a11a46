package segmentstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/pierrec/lz4/v4"
)

func TestRoundTripRandom(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		base := rng.Int64N(1 << 40)
		recs := randomRecords(rng, base, 1+rng.IntN(300))
		opts := Options{BlockSize: []int{1, 100, 4096, DefaultBlockSize}[rng.IntN(4)], NoCompression: rng.IntN(4) == 0}
		topic := "orders." + string(rune('a'+seed%26))
		partition := int32(rng.IntN(10000))

		data, err := Encode(topic, partition, recs, opts)
		if err != nil {
			t.Fatalf("seed %d: encode: %v", seed, err)
		}
		again, _ := Encode(topic, partition, recs, opts)
		if !bytes.Equal(data, again) {
			t.Fatalf("seed %d: encoding is not deterministic", seed)
		}
		seg, err := Decode(data)
		if err != nil {
			t.Fatalf("seed %d: decode: %v", seed, err)
		}
		if !reflect.DeepEqual(seg.Records, recs) {
			t.Fatalf("seed %d: decoded records differ from encoded ones", seed)
		}
		h := seg.Header
		if h.Topic != topic || h.Partition != partition || h.BaseOffset != base ||
			h.LastOffset != recs[len(recs)-1].Offset || int(h.Records) != len(recs) {
			t.Fatalf("seed %d: header %+v does not describe the records", seed, h)
		}
		for _, r := range recs {
			if r.Timestamp < h.MinTimestamp || r.Timestamp > h.MaxTimestamp {
				t.Fatalf("seed %d: timestamp %d outside header range [%d, %d]", seed, r.Timestamp, h.MinTimestamp, h.MaxTimestamp)
			}
		}

		// Ranged reads from a random offset return exactly the suffix from there.
		rd, err := OpenReader(ctx, BytesReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("seed %d: open reader: %v", seed, err)
		}
		if rh, err := rd.Header(ctx); err != nil || !reflect.DeepEqual(rh, h) {
			t.Fatalf("seed %d: reader header %+v, %v; want %+v", seed, rh, err, h)
		}
		from := base + rng.Int64N(h.LastOffset-base+2) - 1
		var got []Record
		for next := from; ; {
			part, err := rd.Read(ctx, next, 1+rng.IntN(64<<10))
			if err != nil {
				t.Fatalf("seed %d: read from %d: %v", seed, next, err)
			}
			if len(part) == 0 {
				break
			}
			got = append(got, part...)
			next = part[len(part)-1].Offset + 1
		}
		var want []Record
		for _, r := range recs {
			if r.Offset >= from {
				want = append(want, r)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: read from %d returned %d records, want %d", seed, from, len(got), len(want))
		}
	}
}

func TestReadRespectsMaxBytes(t *testing.T) {
	ctx := context.Background()
	recs := jsonRecords(500)
	data, err := Encode("orders", 3, recs, Options{BlockSize: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	rd, err := OpenReader(ctx, BytesReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := rd.Read(ctx, 10, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for _, r := range got {
		size += r.Size()
	}
	if got[0].Offset != 10 || size > 10_000 || size+recs[10+len(got)].Size() <= 10_000 {
		t.Fatalf("read %d records (%d bytes) from offset %d; want as many as fit in 10000 bytes from 10", len(got), size, got[0].Offset)
	}
	// A record larger than maxBytes still comes back alone, so a consumer always progresses.
	if one, err := rd.Read(ctx, 42, 1); err != nil || len(one) != 1 || one[0].Offset != 42 {
		t.Fatalf("read with maxBytes 1: %d records, %v", len(one), err)
	}
	if none, err := rd.Read(ctx, 500, 1<<20); err != nil || len(none) != 0 {
		t.Fatalf("read past the end: %d records, %v", len(none), err)
	}
	if _, err := rd.Read(ctx, -1, 1<<20); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("read from -1: %v, want ErrInvalidInput", err)
	}
}

func TestEncoderRejectsBadInput(t *testing.T) {
	rec := func(off int64) *Record { return &Record{Offset: off, Value: []byte("v")} }
	long := string(bytes.Repeat([]byte("t"), MaxTopicLen+1))
	for name, err := range map[string]error{
		"empty topic":        second(NewEncoder("", 0, 0, Options{})),
		"long topic":         second(NewEncoder(long, 0, 0, Options{})),
		"negative partition": second(NewEncoder("t", -1, 0, Options{})),
		"negative base":      second(NewEncoder("t", 0, -5, Options{})),
		"first is not base": func() error {
			e, _ := NewEncoder("t", 0, 10, Options{})
			return e.Append(rec(11))
		}(),
		"offset repeats": func() error {
			e, _ := NewEncoder("t", 0, 10, Options{})
			_ = e.Append(rec(10))
			return e.Append(rec(10))
		}(),
		"offset goes back": func() error {
			e, _ := NewEncoder("t", 0, 10, Options{})
			_ = e.Append(rec(10))
			_ = e.Append(rec(12))
			return e.Append(rec(11))
		}(),
		"empty segment": func() error {
			e, _ := NewEncoder("t", 0, 10, Options{})
			_, err := e.Finish()
			return err
		}(),
		"no records": second(Encode("t", 0, nil, Options{})),
		"record past a block": func() error {
			e, _ := NewEncoder("t", 0, 10, Options{})
			return e.Append(&Record{Offset: 10, Value: make([]byte, MaxRecordBytes+1)})
		}(),
	} {
		if !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: got %v, want ErrInvalidInput", name, err)
		}
	}
}

// TestTheLargestRecordIsReadBack: a record of MaxRecordBytes after a block nearly full
// starts a block of its own, and the segment reads back. Before, a block was sealed only
// once it reached its size, so the record joined it, and readers refused the block as
// corrupt (over MaxBlockRawBytes): an acked record no fetch could return.
func TestTheLargestRecordIsReadBack(t *testing.T) {
	// MaxRecordBytes as the agents count it: its value, and a header of 2 bytes and 64.
	big := bytes.Repeat([]byte("r"), MaxRecordBytes-66)
	recs := []Record{
		{Offset: 0, Timestamp: 1, Value: bytes.Repeat([]byte("s"), DefaultBlockSize-100)},
		{Offset: 1, Timestamp: 2, Value: big, Headers: []RecordHeader{{Key: "k", Value: []byte("v")}}},
		{Offset: 2, Timestamp: 3, Value: []byte("after")},
	}
	data, err := Encode("t", 0, recs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	seg, err := Decode(data)
	if err != nil {
		t.Fatalf("a segment holding a record of %d bytes: %v", len(big), err)
	}
	if !reflect.DeepEqual(seg.Records, recs) {
		t.Fatal("decoded records differ from encoded ones")
	}
}

func TestEncoderReuse(t *testing.T) {
	recs := jsonRecords(50)
	e, err := NewEncoder("a", 1, 0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs[:20] {
		if err := e.Append(&recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	first, err := e.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Reset("b", 2, 20); err != nil {
		t.Fatal(err)
	}
	for i := range recs[20:] {
		if err := e.Append(&recs[20+i]); err != nil {
			t.Fatal(err)
		}
	}
	second, err := e.Finish()
	if err != nil {
		t.Fatal(err)
	}
	s1, err1 := Decode(first)
	s2, err2 := Decode(second)
	if err1 != nil || err2 != nil {
		t.Fatalf("decode: %v, %v", err1, err2)
	}
	if s1.Header.Topic != "a" || len(s1.Records) != 20 || s2.Header.Topic != "b" || s2.Header.BaseOffset != 20 ||
		!reflect.DeepEqual(s2.Records, recs[20:]) || !reflect.DeepEqual(s1.Records, recs[:20]) {
		t.Fatal("a reused encoder mixed up two segments")
	}
}

func TestIncompressibleBlocksAreStoredRaw(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	recs := make([]Record, 20)
	for i := range recs {
		v := make([]byte, 2000)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		recs[i] = Record{Offset: int64(i), Value: v}
	}
	data := encodeStoredAs(t, recs, CodecNone)
	if raw := 20 * 2000; len(data) > raw+raw/20 {
		t.Fatalf("segment of %d random bytes is %d bytes", raw, len(data))
	}
}

// Values that LZ4 shrinks by a sliver (random letters with a timestamp repeated in
// each record, like streamctl bench's) are stored raw; values it shrinks well are still
// compressed.
func TestBarelyCompressibleBlocksAreStoredRaw(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var recs []Record
	for i := range 64 {
		v := make([]byte, 1024)
		binary.BigEndian.PutUint64(v, 1_764_000_000_000_000_000) // one stamp for all
		for j := 8; j < len(v); j++ {
			v[j] = letters[rng.IntN(len(letters))]
		}
		recs = append(recs, Record{Offset: int64(i), Timestamp: 1_764_000_000_000, Value: v})
	}
	// The records as a block holds them: LZ4 finds the repeated framing and stamp.
	var raw []byte
	for i := range recs {
		raw = appendRecord(raw, &recs[i], max(recs[i].Offset-1, 0), recs[i].Timestamp*int64(min(i, 1)))
	}
	n, err := new(lz4.Compressor).CompressBlock(raw, make([]byte, lz4.CompressBlockBound(len(raw))))
	if err != nil || n == 0 || n >= len(raw) {
		t.Fatalf("LZ4 must shrink these records a little for this test to mean anything: %d of %d bytes, %v", n, len(raw), err)
	}
	t.Logf("LZ4 shrinks a block of these records by %.1f%%", 100-100*float64(n)/float64(len(raw)))
	encodeStoredAs(t, recs, CodecNone)
	encodeStoredAs(t, jsonRecords(64), CodecLZ4)
}

// encodeStoredAs encodes recs in blocks of 4 KiB, checks that the segment decodes to them
// and that every block is stored as want, and returns the segment.
func encodeStoredAs(t *testing.T, recs []Record, want Codec) []byte {
	t.Helper()
	data, err := Encode("t", 0, recs, Options{BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range storedCodecs(t, data, recs) {
		if c != want {
			t.Fatalf("block %d stored as %s, want %s", i, c, want)
		}
	}
	return data
}

// storedCodecs decodes data, checks it holds recs, and returns how each block is stored.
func storedCodecs(t *testing.T, data []byte, recs []Record) []Codec {
	t.Helper()
	seg, err := Decode(data)
	if err != nil || !reflect.DeepEqual(seg.Records, recs) {
		t.Fatalf("decode: %v", err)
	}
	var codecs []Codec
	for _, e := range seg.Index {
		codecs = append(codecs, Codec(data[e.Position]))
	}
	return codecs
}

func second[T any](_ T, err error) error { return err }

// countingReader counts the ranged reads that reach the underlying bytes.
type countingReader struct {
	BytesReader
	reads int
}

func (c *countingReader) ReadRange(ctx context.Context, off, n int64) ([]byte, error) {
	c.reads++
	return c.BytesReader.ReadRange(ctx, off, n)
}

func TestCacheServesRepeatedReadsWithoutIO(t *testing.T) {
	ctx := context.Background()
	recs := jsonRecords(300)
	data, err := Encode("orders", 1, recs, Options{BlockSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	src := &countingReader{BytesReader: data}
	cache := NewCache(64 << 20)
	first, err := cache.ReadObject(ctx, "obj", src, int64(len(data)), 100, 50_000)
	if err != nil {
		t.Fatal(err)
	}
	if first[0].Offset != 100 || !reflect.DeepEqual(first, recs[100:100+len(first)]) {
		t.Fatalf("read from 100: %d records starting at %d", len(first), first[0].Offset)
	}
	reads := src.reads
	if reads > 2 {
		t.Fatalf("a cold read took %d ranged reads; want the footer's and one for its blocks", reads)
	}
	again, err := cache.ReadObject(ctx, "obj", src, int64(len(data)), 100, 50_000)
	if err != nil || !reflect.DeepEqual(again, first) {
		t.Fatalf("cached read differs: %v", err)
	}
	if src.reads != reads {
		t.Fatalf("a repeated read made %d more ranged reads", src.reads-reads)
	}
	// A cache too small for a block still answers, reading through.
	tiny := NewCache(1)
	reads = src.reads
	if got, err := tiny.ReadObject(ctx, "obj", src, int64(len(data)), 0, 1<<30); err != nil || len(got) != 300 {
		t.Fatalf("read through a tiny cache: %d records, %v", len(got), err)
	}
	if src.reads-reads != 1 {
		t.Fatalf("reading a whole segment took %d ranged reads, want one GET", src.reads-reads)
	}
	if tiny.Bytes() > 1 {
		t.Fatalf("cache of 1 byte holds %d", tiny.Bytes())
	}
}

// After blocks LZ4 cannot shrink, the encoder stops trying but for a probe every
// probeEvery blocks, and compresses again as soon as a probe pays; the segment decodes the
// same either way.
func TestEncoderProbesAfterIncompressibleBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var recs []Record
	for i := range 24 {
		v := make([]byte, 4096)
		if i < 4 { // noise, then zeros
			for j := range v {
				v[j] = byte(rng.Uint32())
			}
		}
		recs = append(recs, Record{Offset: int64(i), Value: v})
	}
	for _, hint := range []bool{false, true} {
		data, err := Encode("mixed", 0, recs, Options{BlockSize: 4096, Incompressible: hint})
		if err != nil {
			t.Fatal(err)
		}
		codecs := storedCodecs(t, data, recs)
		// Blocks 4..6 hold zeros but come right after the noise: not tried. Block 7 is a
		// probe; it compresses, and so does everything after it.
		for i, c := range codecs {
			want := CodecNone
			if i >= probeEvery-1 {
				want = CodecLZ4
			}
			if c != want {
				t.Fatalf("hint %v: block %d stored as %s, want %s (all: %v)", hint, i, c, want, codecs)
			}
		}
	}
}

// A segment read whole is one cache entry that accounts for the bytes its records alias
// (blocks stored raw are not copied out of them), and is evicted as one: no block of it
// can stay cached, pinning the whole buffer, while counting only its own size.
func TestCacheHoldsASegmentReadWholeAsOneEntry(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 8))
	segment := func(base int64, n int) ([]Record, []byte) {
		recs := make([]Record, n)
		for i := range recs {
			v := make([]byte, 1000)
			for j := range v {
				v[j] = byte(rng.Uint32()) // incompressible: stored raw, read in place
			}
			recs[i] = Record{Offset: base + int64(i), Timestamp: 1, Value: v}
		}
		data, err := Encode("t", 0, recs, Options{BlockSize: 16 << 10})
		if err != nil {
			t.Fatal(err)
		}
		return recs, data
	}
	recsA, dataA := segment(0, 200)
	recsB, dataB := segment(200, 60) // evicts a, though not as many bytes as a's
	if c := storedCodecs(t, dataA, recsA); c[0] != CodecNone {
		t.Fatalf("blocks stored as %v, want raw", c)
	}
	a, b := &countingReader{BytesReader: dataA}, &countingReader{BytesReader: dataB}
	// Room for one of the segments with its records, not for both.
	cache := NewCache(int64(len(dataA)) + 200*recordOverhead + 1024)
	got, err := cache.ReadObject(ctx, "a", a, int64(len(dataA)), 50, 1<<20)
	if err != nil || !reflect.DeepEqual(got, recsA[50:]) {
		t.Fatalf("read a from 50: %d records, %v", len(got), err)
	}
	if n := checkAliasAccounting(t, cache, dataA); n == 0 {
		t.Fatal("records of blocks stored raw were copied out of the segment read whole")
	}
	if got, err := cache.ReadObject(ctx, "a", a, int64(len(dataA)), 0, 1<<20); err != nil || !reflect.DeepEqual(got, recsA) || a.reads != 1 {
		t.Fatalf("cached read of a: %d records, %d reads, %v", len(got), a.reads, err)
	}
	if got, err := cache.ReadObject(ctx, "b", b, int64(len(dataB)), 200, 3000); err != nil || !reflect.DeepEqual(got, recsB[:3]) {
		t.Fatalf("read b: %d records, %v", len(got), err)
	}
	if held, limit := cache.Bytes(), int64(len(dataA))+200*recordOverhead+1024; held > limit {
		t.Fatalf("cache holds %d bytes over its limit %d", held, limit)
	}
	checkAliasAccounting(t, cache, dataA)
	// a went out whole: reading any of it again is one GET of all of it.
	if got, err := cache.ReadObject(ctx, "a", a, int64(len(dataA)), 199, 1<<20); err != nil || !reflect.DeepEqual(got, recsA[199:]) || a.reads != 2 {
		t.Fatalf("read a again: %d records, %d reads, %v", len(got), a.reads, err)
	}
}

// checkAliasAccounting fails t if an entry of cache holds records that alias data
// without accounting for all of data (the entry keeps it all from the collector), and
// returns how many records alias it.
func checkAliasAccounting(t *testing.T, cache *Cache, data []byte) (aliasing int) {
	t.Helper()
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	hi := lo + uintptr(len(data))
	cache.mu.Lock()
	defer cache.mu.Unlock()
	for _, el := range cache.items {
		ent := el.Value.(*cacheEntry)
		var blocks [][]Record
		switch v := ent.value.(type) {
		case []Record:
			blocks = [][]Record{v}
		case *wholeSegment:
			blocks = v.blocks
		}
		n := 0
		for _, recs := range blocks {
			for _, r := range recs {
				if p := uintptr(unsafe.Pointer(unsafe.SliceData(r.Value))); len(r.Value) > 0 && p >= lo && p < hi {
					n++
				}
			}
		}
		if n > 0 && ent.size < int64(len(data)) {
			t.Fatalf("cache entry %v holds %d records in a buffer of %d bytes, accounting %d", ent.key, n, len(data), ent.size)
		}
		aliasing += n
	}
	return aliasing
}

// gatedReader counts ranged reads, tells started of each, and holds each until gate is
// closed.
type gatedReader struct {
	BytesReader
	started chan struct{}
	gate    chan struct{}
	reads   atomic.Int32
}

func (g *gatedReader) ReadRange(ctx context.Context, off, n int64) ([]byte, error) {
	g.reads.Add(1)
	g.started <- struct{}{}
	<-g.gate
	return g.BytesReader.ReadRange(ctx, off, n)
}

// Readers of a segment that come while another reads it whole wait for that read instead
// of reading the segment again (consumers of one partition side by side).
func TestConcurrentReadsOfASegmentShareOneGET(t *testing.T) {
	ctx := context.Background()
	recs := jsonRecords(300)
	data, err := Encode("orders", 1, recs, Options{BlockSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	src := &gatedReader{BytesReader: data, started: make(chan struct{}, 3), gate: make(chan struct{})}
	release := sync.OnceFunc(func() { close(src.gate) })
	t.Cleanup(release) // readers held by a failed test go on
	waiting := make(chan struct{}, 2)
	testHookLoadWait = func() { waiting <- struct{}{} }
	t.Cleanup(func() { testHookLoadWait = nil })
	cache := NewCache(64 << 20)
	got := make(chan []Record, 3)
	read := func(from int64) {
		r, err := cache.ReadObject(ctx, "obj", src, int64(len(data)), from, 1<<20)
		if err != nil {
			t.Error(err)
		}
		got <- r
	}
	go read(0)
	deadline := time.After(10 * time.Second)
	select {
	case <-src.started:
	case <-deadline:
		t.Fatal("the first reader did not start its read")
	}
	go read(100)
	go read(200)
	for range 2 {
		select {
		case <-waiting:
		case <-src.started:
			t.Fatal("a second ranged read of a segment already being read")
		case <-deadline:
			t.Fatal("the other readers neither waited nor read")
		}
	}
	release()
	for range 3 {
		if r := <-got; len(r) == 0 || !reflect.DeepEqual(r, recs[r[0].Offset:]) {
			t.Fatalf("a reader got %d records", len(r))
		}
	}
	if n := src.reads.Load(); n != 1 {
		t.Fatalf("%d ranged reads of one segment by 3 readers at once, want 1", n)
	}
}
