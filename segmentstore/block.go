package segmentstore

import (
	"encoding/binary"
	"slices"
	"sync"

	"github.com/pierrec/lz4/v4"
)

// compressors pools LZ4 compressors: each carries a 64 KiB hash table that is worth
// reusing across blocks and segments (franz-go does the same with its writers).
var compressors = sync.Pool{New: func() any { return new(lz4.Compressor) }}

// scratchBuffers hold LZ4's output before it is known to pay (*[]byte).
var scratchBuffers = sync.Pool{New: func() any { return new([]byte) }}

// appendRecord appends r's block encoding to dst. prevOffset and prevTs are the previous
// record's offset and timestamp in the block; the first record of a block passes its own
// offset and 0.
func appendRecord(dst []byte, r *Record, prevOffset, prevTs int64) []byte {
	dst = binary.AppendUvarint(dst, uint64(r.Offset-prevOffset))
	dst = binary.AppendVarint(dst, r.Timestamp-prevTs)
	dst = appendNullable(dst, r.Key)
	dst = appendNullable(dst, r.Value)
	dst = binary.AppendUvarint(dst, uint64(len(r.Headers)))
	for i := range r.Headers {
		h := &r.Headers[i]
		dst = binary.AppendUvarint(dst, uint64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendNullable(dst, h.Value)
	}
	return dst
}

// appendNullable writes a length-prefixed byte string, -1 standing for nil.
func appendNullable(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

// appendBlock compresses raw (when it pays: CompressionPays) and appends the block header and payload.
// LZ4 writes into a pooled scratch buffer, so that dst needs room only for what is kept:
// an encoder sized for its records never grows (and copies) for LZ4's worst case.
func appendBlock(dst, raw []byte, codec Codec, first int64, records uint32) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, blockHeaderLen)...)
	stored := CodecNone
	if codec == CodecLZ4 {
		scratch := scratchBuffers.Get().(*[]byte)
		bound := lz4.CompressBlockBound(len(raw))
		if cap(*scratch) < bound {
			*scratch = make([]byte, bound)
		}
		c := compressors.Get().(*lz4.Compressor)
		n, err := c.CompressBlock(raw, (*scratch)[:bound])
		compressors.Put(c)
		// n == 0 means incompressible; a block that LZ4 barely shrinks is stored raw
		// too, and counts as incompressible: faster to read, and the encoder stops
		// trying LZ4 on its payload (docs/BENCHMARKS.md, profiling item 21).
		if err == nil && n > 0 && CompressionPays(int64(n), int64(len(raw))) {
			dst = append(dst, (*scratch)[:n]...)
			stored = CodecLZ4
		}
		scratchBuffers.Put(scratch)
	}
	if stored == CodecNone {
		dst = append(dst, raw...)
	}
	hdr := dst[start : start+blockHeaderLen]
	hdr[0] = byte(stored)
	binary.BigEndian.PutUint64(hdr[1:9], uint64(first))
	binary.BigEndian.PutUint32(hdr[9:13], records)
	binary.BigEndian.PutUint32(hdr[13:17], uint32(len(raw)))
	binary.BigEndian.PutUint32(hdr[17:21], uint32(len(dst)-start-blockHeaderLen))
	crc := crc32c(hdr[:21])
	crc = crc32Update(crc, dst[start+blockHeaderLen:])
	binary.BigEndian.PutUint32(hdr[21:25], crc)
	return dst
}

// blockHeader is a verified block header with its payload.
type blockHeader struct {
	pos     int64
	codec   Codec
	first   int64
	last    int64 // from the index; the records must end there
	count   int
	rawLen  int
	payload []byte
}

// checkBlock verifies the CRC and the fields of the block described by e, whose bytes are
// exactly b, without decompressing it.
func checkBlock(b []byte, e IndexEntry) (blockHeader, error) {
	bh := blockHeader{pos: e.Position, last: e.LastOffset}
	if int64(len(b)) != e.Length || len(b) < blockHeaderLen {
		return bh, corrupt("block", e.Position, "%d bytes, index says %d", len(b), e.Length)
	}
	hdr, payload := b[:blockHeaderLen], b[blockHeaderLen:]
	crc := crc32Update(crc32c(hdr[:21]), payload)
	if want := binary.BigEndian.Uint32(hdr[21:25]); crc != want {
		return bh, corrupt("block", e.Position, "crc %08x, stored %08x", crc, want)
	}
	bh.codec = Codec(hdr[0])
	bh.first = int64(binary.BigEndian.Uint64(hdr[1:9]))
	count := binary.BigEndian.Uint32(hdr[9:13])
	rawLen := binary.BigEndian.Uint32(hdr[13:17])
	storedLen := binary.BigEndian.Uint32(hdr[17:21])
	bh.payload = payload
	switch {
	case !bh.codec.valid():
		return bh, corrupt("block", e.Position, "unknown codec %d", bh.codec)
	case bh.first != e.FirstOffset:
		return bh, corrupt("block", e.Position, "first offset %d, index says %d", bh.first, e.FirstOffset)
	case int(storedLen) != len(payload):
		return bh, corrupt("block", e.Position, "stored length %d, have %d", storedLen, len(payload))
	case rawLen > MaxBlockRawBytes:
		return bh, corrupt("block", e.Position, "raw length %d over the %d limit", rawLen, MaxBlockRawBytes)
	case bh.codec == CodecNone && rawLen != storedLen:
		return bh, corrupt("block", e.Position, "raw length %d != stored length %d", rawLen, storedLen)
	// LZ4 cannot expand by more than 255x; a larger claim is a lie that would only cost memory.
	case uint64(rawLen) > 255*uint64(storedLen)+16:
		return bh, corrupt("block", e.Position, "raw length %d from %d stored bytes", rawLen, storedLen)
	case count == 0 || uint64(count)-1 > uint64(e.LastOffset-e.FirstOffset):
		return bh, corrupt("block", e.Position, "%d records cannot span offsets [%d, %d]", count, e.FirstOffset, e.LastOffset)
	// Every record takes at least 5 bytes (offset, timestamp, key, value, header count).
	case uint64(count)*5 > uint64(rawLen):
		return bh, corrupt("block", e.Position, "%d records in %d bytes", count, rawLen)
	}
	bh.count, bh.rawLen = int(count), int(rawLen)
	return bh, nil
}

// decode inflates the payload into raw (len rawLen), which the records then alias, and
// appends them to dst.
func (bh *blockHeader) decode(dst []Record, raw []byte) ([]Record, error) {
	raw, err := bh.inflate(raw)
	if err != nil {
		return nil, err
	}
	return bh.parse(dst, raw)
}

// inflate returns the block's record bytes in raw (len rawLen): decompressed, or copied
// from a block stored raw.
func (bh *blockHeader) inflate(raw []byte) ([]byte, error) {
	if bh.codec == CodecLZ4 {
		n, err := lz4.UncompressBlock(bh.payload, raw)
		if err != nil || n != bh.rawLen {
			return nil, corrupt("block", bh.pos, "lz4: %d of %d bytes: %v", n, bh.rawLen, err)
		}
		return raw, nil
	}
	// Without a buffer, appending to nil allocates one that is not zeroed first (catch-up
	// reads of incompressible blocks spent 7% of the agent's CPU clearing buffers they
	// then overwrote).
	if raw == nil {
		return append([]byte(nil), bh.payload...), nil
	}
	copy(raw, bh.payload)
	return raw, nil
}

// parse appends the records of raw, the block's record bytes, which they alias, to dst.
func (bh *blockHeader) parse(dst []Record, raw []byte) ([]Record, error) {
	dst, err := decodeRecords(dst, raw, bh.first, bh.count)
	if err != nil {
		return nil, corrupt("block", bh.pos, "%v", err)
	}
	if got := dst[len(dst)-1].Offset; got != bh.last {
		return nil, corrupt("block", bh.pos, "last offset %d, index says %d", got, bh.last)
	}
	return dst, nil
}

// DecodeBlock verifies and decodes the block described by e, whose bytes are exactly b.
// The returned records alias one buffer allocated for the block, never b, so that they
// never pin or share the bytes of a whole object; callers may keep them but must not
// modify them.
func DecodeBlock(b []byte, e IndexEntry) ([]Record, error) {
	recs, _, err := decodeBlock(b, e, false)
	return recs, err
}

// decodeBlock is DecodeBlock; with inPlace, for a caller that keeps b as long as the
// records, those of a block stored raw alias b rather than a copy. inflated is the size
// of the buffer allocated for a compressed block's records (0 for one stored raw).
func decodeBlock(b []byte, e IndexEntry, inPlace bool) (recs []Record, inflated int, err error) {
	bh, err := checkBlock(b, e)
	if err != nil {
		return nil, 0, err
	}
	raw := bh.payload
	if bh.codec == CodecLZ4 || !inPlace {
		var buf []byte // nil for a raw block: inflate copies it without zeroing a buffer
		if bh.codec == CodecLZ4 {
			buf, inflated = make([]byte, bh.rawLen), bh.rawLen
		}
		if raw, err = bh.inflate(buf); err != nil {
			return nil, 0, err
		}
	}
	recs, err = bh.parse(make([]Record, 0, bh.count), raw)
	return recs, inflated, err
}

// decodeRecords appends count records parsed from raw, which they then alias, to dst.
func decodeRecords(dst []Record, raw []byte, first int64, count int) ([]Record, error) {
	dst = slices.Grow(dst, count)
	recs := dst[len(dst) : len(dst)+count]
	var headers []RecordHeader
	d := decoder{b: raw}
	prevOffset, prevTs := first, int64(0)
	for i := range recs {
		r := &recs[i]
		delta := d.uvarint()
		if (i == 0) != (delta == 0) || delta > 1<<62 {
			return nil, errorf("record %d: offset delta %d", i, delta)
		}
		r.Offset = prevOffset + int64(delta)
		if r.Offset < prevOffset {
			return nil, errorf("record %d: offset overflow", i)
		}
		r.Timestamp = prevTs + d.varint()
		r.Key = d.nullable()
		r.Value = d.nullable()
		nh := d.uvarint()
		// A header takes at least two bytes, so nh is bounded by what remains.
		if nh > uint64(len(d.b)-d.off)/2 {
			return nil, errorf("record %d: %d headers in %d bytes", i, nh, len(d.b)-d.off)
		}
		if nh > 0 {
			start := len(headers)
			for range nh {
				k := d.bytes(d.uvarint())
				headers = append(headers, RecordHeader{Key: string(k), Value: d.nullable()})
			}
			r.Headers = headers[start:len(headers):len(headers)]
		}
		if d.err != nil {
			return nil, errorf("record %d: %v", i, d.err)
		}
		prevOffset, prevTs = r.Offset, r.Timestamp
	}
	if d.off != len(raw) {
		return nil, errorf("%d bytes left after %d records", len(raw)-d.off, count)
	}
	return dst[:len(dst)+count], nil
}
