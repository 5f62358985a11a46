package segmentstore

import (
	"testing"

	"github.com/pierrec/lz4/v4"
)

// BenchmarkSegment compares segment encoding and decoding with raw LZ4 block compression of
// the same bytes (each block's uncompressed payload), on 1 KiB JSON-like records. All four
// report MB/s of that payload, so the ratios (make bench prints them) are like for like.
func BenchmarkSegment(b *testing.B) {
	recs := jsonRecords(4096)
	data, err := Encode("bench", 0, recs, Options{})
	if err != nil {
		b.Fatal(err)
	}
	seg, err := Decode(data)
	if err != nil {
		b.Fatal(err)
	}
	// The raw payload of every block, as the encoder builds it before compressing.
	var blocks [][]byte
	payload := 0
	for _, e := range seg.Index {
		var raw []byte
		prevOff, prevTs := e.FirstOffset, int64(0)
		for i := range recs {
			if r := &recs[i]; r.Offset >= e.FirstOffset && r.Offset <= e.LastOffset {
				raw = appendRecord(raw, r, prevOff, prevTs)
				prevOff, prevTs = r.Offset, r.Timestamp
			}
		}
		blocks = append(blocks, raw)
		payload += len(raw)
	}
	b.Logf("%d records, %d payload bytes, %d segment bytes (%.2fx)", len(recs), payload, len(data), float64(payload)/float64(len(data)))

	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(payload))
		e, _ := NewEncoder("bench", 0, 0, Options{})
		for b.Loop() {
			_ = e.Reset("bench", 0, 0)
			for i := range recs {
				if err := e.Append(&recs[i]); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := e.Finish(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lz4-compress", func(b *testing.B) {
		b.SetBytes(int64(payload))
		var c lz4.Compressor
		dst := make([]byte, lz4.CompressBlockBound(DefaultBlockSize*2))
		for b.Loop() {
			for _, raw := range blocks {
				if _, err := c.CompressBlock(raw, dst); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(payload))
		for b.Loop() {
			if _, err := Decode(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	compressed := make([][]byte, len(blocks))
	for i, raw := range blocks {
		dst := make([]byte, lz4.CompressBlockBound(len(raw)))
		n, _ := lz4.CompressBlock(raw, dst, nil)
		compressed[i] = dst[:n]
	}
	b.Run("lz4-decompress", func(b *testing.B) {
		b.SetBytes(int64(payload))
		for b.Loop() {
			for i, z := range compressed {
				// Allocate like the decoder must, so the comparison is like for like.
				dst := make([]byte, len(blocks[i]))
				if _, err := lz4.UncompressBlock(z, dst); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
