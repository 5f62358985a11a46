package segmentstore

import (
	"bytes"
	"fmt"
	"math"
)

// Concat joins whole segments of one partition, in offset order, into one segment by
// copying their blocks as they are: no decompression, no re-encoding, so merging segments
// whose blocks already have a good size costs a copy and the checks. Every input is
// verified first (trailer, footer, header and every block's header and CRC, as Decode does
// short of inflating the blocks); a corrupted input is ErrCorrupt, inputs of another
// partition or out of order are ErrInvalidInput, and nothing is produced. The records
// inside a block are not decoded here: readers verify them as they would in the inputs.
func Concat(segs [][]byte) ([]byte, error) {
	parts, err := ConcatParts(segs)
	if err != nil {
		return nil, err
	}
	return bytes.Join(parts, nil), nil
}

// ConcatParts is Concat, but returns the joined segment as the pieces to write in order
// (its header, each input's blocks, its footer and trailer) rather than one buffer: the
// blocks' pieces are the inputs' own bytes, not copies, for a caller that writes them
// out without joining them (objstore.Store.Put takes parts). The first piece is the
// whole header.
func ConcatParts(segs [][]byte) ([][]byte, error) {
	if len(segs) == 0 {
		return nil, invalid("concat of no segments")
	}
	type part struct {
		data  []byte
		index []IndexEntry
	}
	parts := make([]part, len(segs))
	var out Header
	blocks := 0
	for i, data := range segs {
		h, index, err := parseLayout(data)
		if err != nil {
			return nil, fmt.Errorf("segment %d: %w", i, err)
		}
		count := 0
		for _, e := range index {
			bh, err := checkBlock(data[e.Position:e.Position+e.Length], e)
			if err != nil {
				return nil, err
			}
			count += bh.count
		}
		if uint64(count) != uint64(h.Records) {
			return nil, corrupt("header", 0, "segment %d: header says %d records, blocks hold %d", i, h.Records, count)
		}
		if i == 0 {
			out = h
		} else {
			switch {
			case h.Topic != out.Topic || h.Partition != out.Partition:
				return nil, invalid("segment %d is of %s/%d, not %s/%d", i, h.Topic, h.Partition, out.Topic, out.Partition)
			case h.BaseOffset <= out.LastOffset:
				return nil, invalid("segment %d starts at %d, not after %d", i, h.BaseOffset, out.LastOffset)
			case uint64(out.Records)+uint64(h.Records) > math.MaxUint32:
				return nil, invalid("segments hold more than %d records", uint32(math.MaxUint32))
			}
			out.LastOffset, out.Records = h.LastOffset, out.Records+h.Records
			out.MinTimestamp, out.MaxTimestamp = min(out.MinTimestamp, h.MinTimestamp), max(out.MaxTimestamp, h.MaxTimestamp)
		}
		parts[i] = part{data, index}
		blocks += len(index)
	}
	if blocks > MaxBlocks {
		return nil, invalid("segments hold %d blocks, more than %d", blocks, MaxBlocks)
	}
	// Each input's blocks are contiguous (ParseFooter checks it), so they are one piece,
	// their positions shifted in the new footer.
	header := appendHeader(nil, &out)
	pieces := append(make([][]byte, 0, len(parts)+2), header)
	pos := int64(len(header))
	index := make([]IndexEntry, 0, blocks)
	for _, p := range parts {
		first, last := p.index[0].Position, p.index[len(p.index)-1]
		for _, e := range p.index {
			index = append(index, IndexEntry{FirstOffset: e.FirstOffset, LastOffset: e.LastOffset, Position: pos + e.Position - first, Length: e.Length})
		}
		pieces = append(pieces, p.data[first:last.Position+last.Length])
		pos += last.Position + last.Length - first
	}
	tail := appendFooter(nil, index)
	tail = appendTrailer(tail, Trailer{FooterPos: pos, FooterLen: int64(len(tail)), Version: Version1})
	return append(pieces, tail), nil
}
