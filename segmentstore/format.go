package segmentstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Layout constants of format v1. FORMAT.md is the normative description; these are its
// numbers. All fixed-width integers are big-endian.
const (
	// Magic opens the header and closes the trailer of every segment.
	Magic = "SHSG"
	// Version1 is the only format version this build writes and reads.
	Version1 uint16 = 1

	// MaxTopicLen bounds the topic name stored in the header; it is the same bound the
	// coordination package enforces on topic names.
	MaxTopicLen = 249
	// MaxBlockRawBytes bounds the uncompressed size of one block so that a corrupt or
	// hostile length field can never make a reader allocate more than this.
	MaxBlockRawBytes = 64 << 20
	// MaxRecordBytes is the largest record a segment holds, counted as the agents' limits
	// count it: its key, value, and headers, each header 64 bytes besides its key and
	// value (which covers its framing): one record fills a block, with the framing of
	// its deltas, lengths and header count.
	MaxRecordBytes = MaxBlockRawBytes - 5*binary.MaxVarintLen64
	// MaxBlocks bounds the number of blocks, and so the footer, of one segment.
	MaxBlocks = 1 << 20

	// headerFixedLen: magic 4, version 2, codec 1, reserved 1, partition 4, base 8,
	// last 8, records 4, min ts 8, max ts 8, topic length 2. The topic and a CRC follow.
	headerFixedLen = 50
	crcLen         = 4
	// blockHeaderLen: codec 1, first offset 8, records 4, raw length 4, stored length 4,
	// CRC 4 (over the preceding 21 bytes and the payload).
	blockHeaderLen = 25
	// indexEntryLen: first offset 8, last offset 8, position 8, length 4.
	indexEntryLen = 28
	// TrailerLen is the fixed size of the trailer: footer position 8, footer length 4,
	// version 2, reserved 2, CRC 4 (over the preceding 16 bytes), magic 4.
	TrailerLen = 24
	// footerFixedLen: block count 4 and the CRC.
	footerFixedLen = 8
)

// Codec says how a block's payload is stored.
type Codec uint8

const (
	// CodecNone stores the payload as is.
	CodecNone Codec = 0
	// CodecLZ4 stores the payload as one LZ4 block (not the LZ4 frame format).
	CodecLZ4 Codec = 1
)

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecLZ4:
		return "lz4"
	default:
		return "unknown"
	}
}

func (c Codec) valid() bool { return c == CodecNone || c == CodecLZ4 }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Header describes a whole segment. It is the first section of the object.
type Header struct {
	Version      uint16
	Codec        Codec // the codec the writer asked for; a block may still be stored raw
	Topic        string
	Partition    int32
	BaseOffset   int64 // offset of the first record
	LastOffset   int64 // offset of the last record
	Records      uint32
	MinTimestamp int64
	MaxTimestamp int64
}

// Len is the encoded size of the header, which is also the position of the first block.
func (h *Header) Len() int { return headerFixedLen + len(h.Topic) + crcLen }

func appendHeader(dst []byte, h *Header) []byte {
	start := len(dst)
	dst = append(dst, Magic...)
	dst = binary.BigEndian.AppendUint16(dst, h.Version)
	dst = append(dst, byte(h.Codec), 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.Partition))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.BaseOffset))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.LastOffset))
	dst = binary.BigEndian.AppendUint32(dst, h.Records)
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.MinTimestamp))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.MaxTimestamp))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(h.Topic)))
	dst = append(dst, h.Topic...)
	return binary.BigEndian.AppendUint32(dst, crc32c(dst[start:]))
}

// ParseHeader decodes a segment header that must fill b exactly (b is the segment up to
// the first block, whose position the footer gives).
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < headerFixedLen+crcLen {
		return h, corrupt("header", 0, "%d bytes, need at least %d", len(b), headerFixedLen+crcLen)
	}
	if string(b[:4]) != Magic {
		return h, corrupt("header", 0, "bad magic %q", b[:4])
	}
	topicLen := int(binary.BigEndian.Uint16(b[48:50]))
	if len(b) != headerFixedLen+topicLen+crcLen {
		return h, corrupt("header", 0, "length %d does not match topic length %d", len(b), topicLen)
	}
	body := b[:len(b)-crcLen]
	if got, want := crc32c(body), binary.BigEndian.Uint32(b[len(body):]); got != want {
		return h, corrupt("header", 0, "crc %08x, stored %08x", got, want)
	}
	h.Version = binary.BigEndian.Uint16(b[4:6])
	if h.Version != Version1 {
		return h, fmtVersion(h.Version)
	}
	h.Codec = Codec(b[6])
	h.Partition = int32(binary.BigEndian.Uint32(b[8:12]))
	h.BaseOffset = int64(binary.BigEndian.Uint64(b[12:20]))
	h.LastOffset = int64(binary.BigEndian.Uint64(b[20:28]))
	h.Records = binary.BigEndian.Uint32(b[28:32])
	h.MinTimestamp = int64(binary.BigEndian.Uint64(b[32:40]))
	h.MaxTimestamp = int64(binary.BigEndian.Uint64(b[40:48]))
	h.Topic = string(b[headerFixedLen : headerFixedLen+topicLen])
	switch {
	case b[7] != 0:
		return h, corrupt("header", 0, "reserved byte is %d", b[7])
	case !h.Codec.valid():
		return h, corrupt("header", 0, "unknown codec %d", h.Codec)
	case topicLen == 0 || topicLen > MaxTopicLen:
		return h, corrupt("header", 0, "topic length %d", topicLen)
	case h.Partition < 0:
		return h, corrupt("header", 0, "negative partition %d", h.Partition)
	case h.BaseOffset < 0 || h.LastOffset < h.BaseOffset:
		return h, corrupt("header", 0, "offsets [%d, %d]", h.BaseOffset, h.LastOffset)
	case h.Records == 0 || uint64(h.Records)-1 > uint64(h.LastOffset-h.BaseOffset):
		return h, corrupt("header", 0, "%d records cannot span offsets [%d, %d]", h.Records, h.BaseOffset, h.LastOffset)
	case h.MinTimestamp > h.MaxTimestamp:
		return h, corrupt("header", 0, "timestamps [%d, %d]", h.MinTimestamp, h.MaxTimestamp)
	}
	return h, nil
}

// IndexEntry is one footer entry: where a block is and which offsets it holds.
type IndexEntry struct {
	FirstOffset int64
	LastOffset  int64
	Position    int64 // byte position of the block header in the segment
	Length      int64 // block header plus stored payload
}

// Trailer is the fixed-size end of a segment that locates the footer.
type Trailer struct {
	FooterPos int64
	FooterLen int64
	Version   uint16
}

func appendTrailer(dst []byte, t Trailer) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.FooterPos))
	dst = binary.BigEndian.AppendUint32(dst, uint32(t.FooterLen))
	dst = binary.BigEndian.AppendUint16(dst, t.Version)
	dst = append(dst, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, crc32c(dst[start:]))
	return append(dst, Magic...)
}

// ParseTrailer decodes the last TrailerLen bytes of a segment of the given total size.
func ParseTrailer(b []byte, size int64) (Trailer, error) {
	var t Trailer
	if len(b) != TrailerLen || size < TrailerLen {
		return t, corrupt("trailer", -1, "segment of %d bytes has no room for a %d-byte trailer", size, TrailerLen)
	}
	pos := size - TrailerLen
	if string(b[20:24]) != Magic {
		return t, corrupt("trailer", pos, "bad magic %q", b[20:24])
	}
	if got, want := crc32c(b[:16]), binary.BigEndian.Uint32(b[16:20]); got != want {
		return t, corrupt("trailer", pos, "crc %08x, stored %08x", got, want)
	}
	if b[14] != 0 || b[15] != 0 {
		return t, corrupt("trailer", pos, "reserved bytes are %d %d", b[14], b[15])
	}
	t.Version = binary.BigEndian.Uint16(b[12:14])
	if t.Version != Version1 {
		return t, fmtVersion(t.Version)
	}
	fp := binary.BigEndian.Uint64(b[0:8])
	t.FooterLen = int64(binary.BigEndian.Uint32(b[8:12]))
	minHeader := int64(headerFixedLen + 1 + crcLen)
	if fp > uint64(size) || int64(fp) < minHeader+blockHeaderLen || int64(fp)+t.FooterLen != pos {
		return t, corrupt("trailer", pos, "footer [%d, +%d) does not end at the trailer (%d)", fp, t.FooterLen, pos)
	}
	t.FooterPos = int64(fp)
	if t.FooterLen < footerFixedLen+indexEntryLen || (t.FooterLen-footerFixedLen)%indexEntryLen != 0 {
		return t, corrupt("trailer", pos, "footer length %d is not a whole number of entries", t.FooterLen)
	}
	return t, nil
}

func appendFooter(dst []byte, index []IndexEntry) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(index)))
	for _, e := range index {
		dst = binary.BigEndian.AppendUint64(dst, uint64(e.FirstOffset))
		dst = binary.BigEndian.AppendUint64(dst, uint64(e.LastOffset))
		dst = binary.BigEndian.AppendUint64(dst, uint64(e.Position))
		dst = binary.BigEndian.AppendUint32(dst, uint32(e.Length))
	}
	return binary.BigEndian.AppendUint32(dst, crc32c(dst[start:]))
}

// ParseFooter decodes the footer located by t and checks that its entries tile the bytes
// between the header and the footer with strictly increasing offsets.
func ParseFooter(b []byte, t Trailer) ([]IndexEntry, error) {
	if int64(len(b)) != t.FooterLen {
		return nil, corrupt("footer", t.FooterPos, "%d bytes, trailer says %d", len(b), t.FooterLen)
	}
	body := b[:len(b)-crcLen]
	if got, want := crc32c(body), binary.BigEndian.Uint32(b[len(body):]); got != want {
		return nil, corrupt("footer", t.FooterPos, "crc %08x, stored %08x", got, want)
	}
	n := int(binary.BigEndian.Uint32(body[:4]))
	if n > MaxBlocks || 4+n*indexEntryLen != len(body) {
		return nil, corrupt("footer", t.FooterPos, "%d entries in %d bytes", n, len(body))
	}
	index := make([]IndexEntry, n)
	for i := range index {
		p := body[4+i*indexEntryLen:]
		e := IndexEntry{
			FirstOffset: int64(binary.BigEndian.Uint64(p[0:8])),
			LastOffset:  int64(binary.BigEndian.Uint64(p[8:16])),
			Position:    int64(binary.BigEndian.Uint64(p[16:24])),
			Length:      int64(binary.BigEndian.Uint32(p[24:28])),
		}
		if e.FirstOffset < 0 || e.LastOffset < e.FirstOffset || e.Length <= blockHeaderLen ||
			e.Position < 0 || e.Position > t.FooterPos {
			return nil, corrupt("footer", t.FooterPos, "entry %d: offsets [%d, %d] at [%d, +%d)",
				i, e.FirstOffset, e.LastOffset, e.Position, e.Length)
		}
		if i > 0 {
			prev := index[i-1]
			if e.FirstOffset <= prev.LastOffset || e.Position != prev.Position+prev.Length {
				return nil, corrupt("footer", t.FooterPos, "entry %d does not follow entry %d", i, i-1)
			}
		}
		index[i] = e
	}
	last := index[n-1]
	if last.Position+last.Length != t.FooterPos {
		return nil, corrupt("footer", t.FooterPos, "blocks end at %d, footer starts at %d", last.Position+last.Length, t.FooterPos)
	}
	return index, nil
}

func fmtVersion(v uint16) error {
	return fmt.Errorf("%w %d (this build reads version %d)", ErrUnsupportedVersion, v, Version1)
}
