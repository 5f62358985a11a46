package segmentstore

import (
	"context"
	"fmt"
	"sort"
)

// RangeReader reads n bytes at byte position off of one object. A ranged GET against an
// object store is the typical implementation; BytesReader serves a segment held in memory.
type RangeReader interface {
	ReadRange(ctx context.Context, off, n int64) ([]byte, error)
}

// BytesReader is a RangeReader over a segment already in memory.
type BytesReader []byte

// ReadRange returns b[off:off+n] or an error if that range is not inside b.
func (b BytesReader) ReadRange(_ context.Context, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off+n > int64(len(b)) {
		return nil, fmt.Errorf("segmentstore: range [%d, +%d) outside %d bytes", off, n, len(b))
	}
	return b[off : off+n], nil
}

// DefaultTailRead is how many bytes OpenReader reads from the end of a segment. It holds
// the trailer and the footer of a segment of up to ~580 blocks in a single request.
const DefaultTailRead = 16 << 10

// Reader reads parts of a segment through ranged reads: the footer once, when opened, and
// then only the blocks that hold the offsets asked for. It is safe for concurrent use.
type Reader struct {
	src     RangeReader
	size    int64
	trailer Trailer
	index   []IndexEntry
}

// OpenReader reads and verifies the trailer and footer of the segment of size bytes.
func OpenReader(ctx context.Context, src RangeReader, size int64) (*Reader, error) {
	if size < TrailerLen {
		return nil, corrupt("trailer", -1, "segment of %d bytes is shorter than its trailer", size)
	}
	tailLen := min(size, DefaultTailRead)
	tail, err := src.ReadRange(ctx, size-tailLen, tailLen)
	if err != nil {
		return nil, fmt.Errorf("read segment tail: %w", err)
	}
	if int64(len(tail)) != tailLen {
		return nil, corrupt("trailer", -1, "read %d tail bytes, asked for %d", len(tail), tailLen)
	}
	t, err := ParseTrailer(tail[tailLen-TrailerLen:], size)
	if err != nil {
		return nil, err
	}
	var footer []byte
	if tailStart := size - tailLen; t.FooterPos >= tailStart {
		footer = tail[t.FooterPos-tailStart : t.FooterPos-tailStart+t.FooterLen]
	} else if footer, err = src.ReadRange(ctx, t.FooterPos, t.FooterLen); err != nil {
		return nil, fmt.Errorf("read segment footer: %w", err)
	}
	index, err := ParseFooter(footer, t)
	if err != nil {
		return nil, err
	}
	return &Reader{src: src, size: size, trailer: t, index: index}, nil
}

// Index returns the footer index. Callers must not modify it.
func (r *Reader) Index() []IndexEntry { return r.index }

// Header reads and verifies the segment header.
func (r *Reader) Header(ctx context.Context) (Header, error) {
	b, err := r.src.ReadRange(ctx, 0, r.index[0].Position)
	if err != nil {
		return Header{}, fmt.Errorf("read segment header: %w", err)
	}
	h, err := ParseHeader(b)
	if err != nil {
		return h, err
	}
	return h, checkHeaderIndex(&h, r.index)
}

// Locate returns the index of the block holding offset, or of the first block after it
// when offset falls in a gap; len(Index()) when offset is past the segment.
func (r *Reader) Locate(offset int64) int {
	return sort.Search(len(r.index), func(i int) bool { return r.index[i].LastOffset >= offset })
}

// ReadBlock reads and decodes block i with one ranged read.
func (r *Reader) ReadBlock(ctx context.Context, i int) ([]Record, error) {
	blocks, err := r.ReadBlocks(ctx, i, i+1)
	if err != nil {
		return nil, err
	}
	return blocks[0], nil
}

// ReadBlocks fetches blocks [first, end) with one ranged read and decodes each.
func (r *Reader) ReadBlocks(ctx context.Context, first, end int) ([][]Record, error) {
	if first < 0 || end > len(r.index) || first >= end {
		return nil, fmt.Errorf("%w: blocks [%d, %d) of %d", ErrInvalidInput, first, end, len(r.index))
	}
	pos := r.index[first].Position
	span := r.index[end-1].Position + r.index[end-1].Length - pos
	b, err := r.src.ReadRange(ctx, pos, span)
	if err != nil {
		return nil, fmt.Errorf("read blocks %d..%d: %w", first, end-1, err)
	}
	if int64(len(b)) != span {
		return nil, corrupt("block", pos, "read %d bytes, asked for %d", len(b), span)
	}
	out := make([][]Record, 0, end-first)
	for _, e := range r.index[first:end] {
		recs, err := DecodeBlock(b[e.Position-pos:e.Position-pos+e.Length], e)
		if err != nil {
			return nil, err
		}
		out = append(out, recs)
	}
	return out, nil
}

// Read returns records with offsets ≥ from, in order, stopping before their payload
// (Record.Size) would exceed maxBytes; like a Kafka fetch, it returns the first such record
// even when that one alone exceeds maxBytes. The blocks it needs are fetched with a single ranged read.
func (r *Reader) Read(ctx context.Context, from int64, maxBytes int) ([]Record, error) {
	if from < 0 {
		return nil, fmt.Errorf("%w: offset %d is negative", ErrInvalidInput, from)
	}
	first := r.Locate(from)
	if first == len(r.index) {
		return nil, nil
	}
	// Stored (compressed) lengths under-count payload, so this range covers at least
	// maxBytes of records whenever the segment has them.
	end, span := first, int64(0)
	for end < len(r.index) && (end == first || span < int64(maxBytes)) {
		span += r.index[end].Length
		end++
	}
	blocks, err := r.ReadBlocks(ctx, first, end)
	if err != nil {
		return nil, err
	}
	var out []Record
	size, full := 0, false
	for _, recs := range blocks {
		if out, size, full = Take(out, size, recs, from, maxBytes); full {
			break
		}
	}
	return out, nil
}
