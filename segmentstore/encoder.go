package segmentstore

import (
	"math"
	"sync"
)

// Options tune the encoder. The zero value is valid and means the documented defaults.
type Options struct {
	// BlockSize is the target uncompressed size of a block in bytes. A block is sealed as
	// soon as it reaches this size, so blocks may exceed it by one record. Smaller blocks
	// make ranged reads of a few records cheaper; larger ones compress better.
	// Default: DefaultBlockSize (64 KiB). Capped at MaxBlockRawBytes.
	BlockSize int
	// NoCompression stores every block raw (CodecNone). Default: false, blocks are
	// LZ4-compressed; a block that LZ4 does not shrink by more than minSaving is stored
	// raw either way.
	NoCompression bool
	// Incompressible says the payload is not expected to compress (a writer's previous
	// segment did not): LZ4 is tried on one block in probeEvery only (the last of each
	// run of probeEvery), and on every block again once one compresses. Default: false, every block is tried until
	// incompressibleStreak blocks in a row fail to shrink.
	Incompressible bool
}

// Adaptive compression: after incompressibleStreak blocks that LZ4 could not shrink (by
// more than minSaving), an Encoder tries one block in probeEvery.
const (
	incompressibleStreak = 2
	probeEvery           = 8
)

// CompressionPays reports whether data stored in stored bytes, of raw bytes of payload,
// saved more than a twentieth: below that, LZ4 costs more time, to write and to read
// every block, than its bytes are worth, and data that LZ4 barely shrinks (random or
// encrypted values, whose records' framing repeats) is best stored raw and not tried
// again. Blocks (appendBlock) and writers deciding whether their payload compresses
// (actors) use it alike.
func CompressionPays(stored, raw int64) bool { return stored*20 < raw*19 }

// DefaultBlockSize is the default target uncompressed size of a block.
const DefaultBlockSize = 64 << 10

func (o Options) withDefaults() Options {
	if o.BlockSize <= 0 {
		o.BlockSize = DefaultBlockSize
	}
	if o.BlockSize > MaxBlockRawBytes {
		o.BlockSize = MaxBlockRawBytes
	}
	return o
}

func (o Options) codec() Codec {
	if o.NoCompression {
		return CodecNone
	}
	return CodecLZ4
}

// Encoder builds one segment from records appended in offset order. It is not safe for
// concurrent use. Reset lets one Encoder build many segments and reuse its buffers.
type Encoder struct {
	opts   Options
	header Header
	out    []byte // the segment so far: header placeholder, then sealed blocks
	raw    []byte // the open block's uncompressed payload
	index  []IndexEntry

	// sizeHint sizes the next segment's buffer up front (growing a multi-megabyte buffer
	// by doubling costs a copy per step): the last segment's size and an eighth, or, in
	// Encode, a bound on the segment of the records at hand.
	sizeHint int

	// incompressible counts the last blocks LZ4 could not shrink (CompressionPays); past
	// incompressibleStreak, blocks are stored raw without trying, but for one probe every
	// probeEvery blocks: random or encrypted payloads then cost no compression time.
	incompressible int

	blockFirst   int64
	blockRecords uint32
	prevOffset   int64
	prevTs       int64
}

// NewEncoder starts a segment of topic/partition whose first record will have offset base.
func NewEncoder(topic string, partition int32, base int64, opts Options) (*Encoder, error) {
	e := &Encoder{opts: opts.withDefaults()}
	if err := e.Reset(topic, partition, base); err != nil {
		return nil, err
	}
	return e, nil
}

// Reset discards any records and starts a new segment, keeping the buffers.
func (e *Encoder) Reset(topic string, partition int32, base int64) error {
	switch {
	case len(topic) == 0 || len(topic) > MaxTopicLen:
		return invalid("topic name of %d bytes, want 1..%d", len(topic), MaxTopicLen)
	case partition < 0:
		return invalid("partition %d is negative", partition)
	case base < 0:
		return invalid("base offset %d is negative", base)
	}
	e.header = Header{
		Version: Version1, Codec: e.opts.codec(), Topic: topic, Partition: partition,
		BaseOffset: base, LastOffset: base - 1,
		MinTimestamp: math.MaxInt64, MaxTimestamp: math.MinInt64,
	}
	// The header's size depends only on the topic, so reserve it now and fill it in
	// Finish, when counts and timestamps are known.
	if e.out == nil {
		e.out = make([]byte, 0, max(e.sizeHint, e.header.Len()))
	}
	e.out = append(e.out[:0], make([]byte, e.header.Len())...)
	e.raw = e.raw[:0]
	e.index = e.index[:0]
	e.blockRecords = 0
	e.incompressible = 0
	if e.opts.Incompressible {
		e.incompressible = incompressibleStreak
	}
	return nil
}

// Append adds r to the segment. The first record must have the base offset; each later one
// a strictly greater offset (gaps are allowed, for compacted segments).
func (e *Encoder) Append(r *Record) error {
	h := &e.header
	if h.Records == 0 && r.Offset != h.BaseOffset {
		return invalid("first record has offset %d, segment base is %d", r.Offset, h.BaseOffset)
	}
	if h.Records > 0 && r.Offset <= h.LastOffset {
		return invalid("offset %d does not follow %d", r.Offset, h.LastOffset)
	}
	// A block is sealed once it reaches BlockSize, so a large record would carry it past
	// MaxBlockRawBytes, which readers refuse as corrupt: it starts a block of its own.
	if n := r.maxEncodedLen(); n > MaxBlockRawBytes {
		return invalid("record of %d bytes: a block holds at most %d (MaxRecordBytes %d)", r.Size(), MaxBlockRawBytes, MaxRecordBytes)
	} else if e.blockRecords > 0 && len(e.raw)+n > MaxBlockRawBytes {
		e.seal()
	}
	if h.Records == math.MaxUint32 {
		return invalid("segment already holds %d records", h.Records)
	}
	if e.blockRecords == 0 {
		e.blockFirst, e.prevOffset, e.prevTs = r.Offset, r.Offset, 0
	}
	e.raw = appendRecord(e.raw, r, e.prevOffset, e.prevTs)
	e.prevOffset, e.prevTs = r.Offset, r.Timestamp
	e.blockRecords++
	h.Records++
	h.LastOffset = r.Offset
	h.MinTimestamp = min(h.MinTimestamp, r.Timestamp)
	h.MaxTimestamp = max(h.MaxTimestamp, r.Timestamp)
	if len(e.raw) >= e.opts.BlockSize {
		e.seal()
	}
	return nil
}

// Records is the number of records appended since the last Reset.
func (e *Encoder) Records() int { return int(e.header.Records) }

// Len approximates the encoded size so far: sealed blocks plus the open block uncompressed.
func (e *Encoder) Len() int { return len(e.out) + len(e.raw) }

func (e *Encoder) seal() {
	pos := int64(len(e.out))
	codec := e.opts.codec()
	if codec == CodecLZ4 && e.incompressible >= incompressibleStreak && len(e.index)%probeEvery != probeEvery-1 {
		codec = CodecNone
	}
	e.out = appendBlock(e.out, e.raw, codec, e.blockFirst, e.blockRecords)
	switch {
	case codec == CodecLZ4 && Codec(e.out[pos]) == CodecNone:
		e.incompressible++
	case codec == CodecLZ4:
		e.incompressible = 0
	}
	e.index = append(e.index, IndexEntry{
		FirstOffset: e.blockFirst, LastOffset: e.prevOffset,
		Position: pos, Length: int64(len(e.out)) - pos,
	})
	e.raw = e.raw[:0]
	e.blockRecords = 0
}

// Finish seals the open block, writes header, footer and trailer, and returns the
// segment. The returned slice is owned by the caller; the Encoder must be Reset before it
// is used again.
func (e *Encoder) Finish() ([]byte, error) {
	if e.header.Records == 0 {
		return nil, invalid("segment %s/%d@%d has no records", e.header.Topic, e.header.Partition, e.header.BaseOffset)
	}
	if e.blockRecords > 0 {
		e.seal()
	}
	if len(e.index) > MaxBlocks {
		return nil, invalid("%d blocks, at most %d", len(e.index), MaxBlocks)
	}
	appendHeader(e.out[:0], &e.header)
	footerPos := int64(len(e.out))
	e.out = appendFooter(e.out, e.index)
	e.out = appendTrailer(e.out, Trailer{FooterPos: footerPos, FooterLen: int64(len(e.out)) - footerPos, Version: Version1})
	seg := e.out
	e.sizeHint = len(seg) + len(seg)/8
	e.out = nil // the caller owns seg; the next Reset allocates afresh
	return seg, nil
}

// Encode writes records (in offset order, the first one being the base) as one segment.
func Encode(topic string, partition int32, records []Record, opts Options) ([]byte, error) {
	if len(records) == 0 {
		return nil, invalid("no records to encode")
	}
	e := &Encoder{opts: opts.withDefaults()}
	// Size the segment for its records up front (incompressible payloads fill it, and
	// growing by doubling copied the segment several times), and take the open block's
	// buffer from a pool.
	raw := 0
	for i := range records {
		raw += records[i].maxEncodedLen()
	}
	blocks := raw/e.opts.BlockSize + 1
	e.sizeHint = raw + blocks*(blockHeaderLen+indexEntryLen) + footerFixedLen + TrailerLen + (&Header{Topic: topic}).Len()
	buf := rawBuffers.Get().(*[]byte)
	e.raw = (*buf)[:0]
	defer func() {
		*buf = e.raw[:0]
		rawBuffers.Put(buf)
	}()
	if err := e.Reset(topic, partition, records[0].Offset); err != nil {
		return nil, err
	}
	for i := range records {
		if err := e.Append(&records[i]); err != nil {
			return nil, err
		}
	}
	seg, err := e.Finish()
	if err != nil {
		return nil, err
	}
	// Compressed, the segment may fill a small part of the buffer sized for its records;
	// callers keep segments in memory, so give the rest back.
	if cap(seg) > len(seg)+len(seg)/4+4096 {
		seg = append([]byte(nil), seg...)
	}
	return seg, nil
}

// rawBuffers hold the open block of Encode's encoders (*[]byte).
var rawBuffers = sync.Pool{New: func() any { return new([]byte) }}
