package kafka

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf8"
	"unsafe"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
)

// RecordBatch v2 layout (Kafka's DefaultRecordBatch): the fixed header is 61 bytes; the
// length counts from the partition leader epoch; the CRC-32C covers the attributes to the
// end.
const (
	batchHeaderBytes = 61
	batchLengthAt    = 8
	batchCRCAt       = 17
	batchAttrsAt     = 21

	attrCompression   = 0x07
	attrTransactional = 0x10
	attrControl       = 0x20
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// crcOf is a batch's CRC-32C of the bytes from its attributes on.
func crcOf(b []byte) uint32 { return crc32.Checksum(b, crc32c) }

// batch is one RecordBatch of a produce request with its records decoded.
type batch struct {
	producerID    int64
	producerEpoch int16
	firstSequence int32
	records       []*partitionpb.Record
	bytes         int // key + value + headers of its records, each header counting partitionpb.HeaderOverhead
}

// batchError is a batch a partition refuses, with the Kafka error code that says why.
// memory says the bound it went past was the memory its request may decode to
// (batchLimits.memory), not one of the partition's limits.
type batchError struct {
	code   int16
	msg    string
	memory bool
}

func (e *batchError) Error() string { return e.msg }

func corrupt(format string, args ...any) error {
	return &batchError{code: kerr.CorruptMessage.Code, msg: fmt.Sprintf(format, args...)}
}

// batchLimits bound what the batches of one partition of a produce request decode to.
type batchLimits struct {
	payload int // key, value and header bytes of its records (MaxBatchBytes)
	memory  int // what its decoded records hold: their decompressed bytes, recordOverhead each and headerOverhead a header (the request's budget left)
	records int // its records (MaxBatchRecords)
	record  int // bytes of one record (MaxRecordBytes)
}

// recordOverhead is what a decoded record holds in memory beside its bytes: its
// partitionpb.Record and the pointer to it. A record may take 7 bytes of a frame and
// nothing of a payload, so that without counting it a frame of empty records would
// decode to twenty times its size, and a compressed one to any size.
const recordOverhead = int(unsafe.Sizeof(partitionpb.Record{}) + unsafe.Sizeof(uintptr(0)))

// headerOverhead is what a decoded header holds in memory beside its key and value: its
// partitionpb.Header and the pointer to it, and kmsg's header while it is decoded.
const headerOverhead = int(unsafe.Sizeof(partitionpb.Header{}) + unsafe.Sizeof(uintptr(0)) + unsafe.Sizeof(kmsg.Header{}))

// recordFraming bounds what a v2 record's encoding takes besides its key, value and
// headers: attributes, a timestamp delta (a varlong), an offset delta and the key, value
// and header counts' lengths (varints). A header's two length varints take at most 10
// bytes, less than partitionpb.HeaderOverhead, so a record longer than this and the
// record limit cannot be within the limit.
const recordFraming = 1 + binary.MaxVarintLen64 + 4*binary.MaxVarintLen32

// minRecordBytes is the smallest record a v2 batch can hold: seven one-byte varints
// (length, attributes, timestamp delta, offset delta, key and value lengths, header count).
const minRecordBytes = 7

// decodeBatches decodes the record batches of one partition of a produce request and
// returns them with what they hold in memory (batchLimits.memory). Every batch must be
// magic 2 with a correct CRC, neither transactional nor a control batch, and within lim;
// the records' room is checked before any is decoded.
func decodeBatches(raw []byte, lim batchLimits) (_ []batch, memory int, _ error) {
	var out []batch
	payload, records := 0, 0
	for len(raw) > 0 {
		if len(raw) < batchHeaderBytes {
			return nil, 0, corrupt("record batch of %d bytes, the header alone is %d", len(raw), batchHeaderBytes)
		}
		n := int(int32(binary.BigEndian.Uint32(raw[batchLengthAt:]))) + 12
		if n < batchHeaderBytes || n > len(raw) {
			return nil, 0, corrupt("record batch claims %d bytes, %d are there", n, len(raw))
		}
		b, held, err := decodeBatch(raw[:n], batchLimits{payload: lim.payload - payload, memory: lim.memory - memory,
			records: lim.records - records, record: lim.record})
		if err != nil {
			return nil, 0, err
		}
		payload += b.bytes
		memory += held
		records += len(b.records)
		out = append(out, b)
		raw = raw[n:]
	}
	if len(out) == 0 {
		return nil, 0, &batchError{code: kerr.InvalidRecord.Code, msg: "no record batch"}
	}
	return out, memory, nil
}

// decodeBatch decodes one batch within lim, and returns what its records hold in memory.
func decodeBatch(raw []byte, lim batchLimits) (_ batch, held int, _ error) {
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(raw); err != nil {
		return batch{}, 0, corrupt("record batch: %v", err)
	}
	if rb.Magic != 2 {
		return batch{}, 0, &batchError{code: kerr.UnsupportedForMessageFormat.Code, msg: fmt.Sprintf("record batch magic %d: only v2 (magic 2) is accepted", rb.Magic)}
	}
	if got := crcOf(raw[batchAttrsAt:]); got != uint32(rb.CRC) {
		return batch{}, 0, corrupt("record batch CRC %08x, computed %08x", uint32(rb.CRC), got)
	}
	if rb.Attributes&(attrTransactional|attrControl) != 0 {
		return batch{}, 0, &batchError{code: kerr.InvalidRecord.Code, msg: "transactional and control batches are not supported"}
	}
	if rb.NumRecords <= 0 || rb.LastOffsetDelta != rb.NumRecords-1 {
		return batch{}, 0, corrupt("record batch of %d records with last offset delta %d", rb.NumRecords, rb.LastOffsetDelta)
	}
	count := int(rb.NumRecords)
	switch {
	case count > lim.records:
		return batch{}, 0, &batchError{code: kerr.MessageTooLarge.Code,
			msg: fmt.Sprintf("record batch of %d records: the partition may take %d more in one request", count, max(lim.records, 0))}
	case count*recordOverhead > lim.memory:
		return batch{}, 0, overMemory(count)
	}
	data, err := decompress(rb.Records, rb.Attributes&attrCompression, min(lim.payload, lim.memory-count*recordOverhead))
	if be, ok := err.(*batchError); ok && be.code == kerr.MessageTooLarge.Code && lim.memory-count*recordOverhead < lim.payload {
		be.memory = true
	}
	if err != nil {
		return batch{}, 0, err
	}
	held = len(data) + count*recordOverhead
	if count > len(data)/minRecordBytes {
		return batch{}, 0, corrupt("record batch claims %d records in %d bytes", count, len(data))
	}
	b := batch{producerID: rb.ProducerID, producerEpoch: rb.ProducerEpoch, firstSequence: rb.FirstSequence,
		records: make([]*partitionpb.Record, 0, count)}
	for i := range rb.NumRecords {
		length, n := binary.Varint(data)
		if n <= 0 || length < 0 || int64(len(data)-n) < length {
			return batch{}, 0, corrupt("record %d of %d: bad length", i, rb.NumRecords)
		}
		if length > int64(lim.record)+recordFraming {
			// Its headers' framing alone would count past the limit (each counts
			// partitionpb.HeaderOverhead), and decoding it would take memory per header.
			return batch{}, 0, &batchError{code: kerr.MessageTooLarge.Code,
				msg: fmt.Sprintf("record %d takes %d bytes of its batch, more than a record of at most %d bytes can", i, length, lim.record)}
		}
		var kr kmsg.Record
		if err := kr.ReadFrom(data[:n+int(length)]); err != nil {
			return batch{}, 0, corrupt("record %d of %d: %v", i, rb.NumRecords, err)
		}
		data = data[n+int(length):]
		if kr.OffsetDelta != i {
			return batch{}, 0, corrupt("record %d has offset delta %d", i, kr.OffsetDelta)
		}
		r := &partitionpb.Record{Key: kr.Key, Value: kr.Value}
		if ts := rb.FirstTimestamp + kr.TimestampDelta64; ts > 0 {
			r.TimestampMs = ts // else the partition stamps its clock
		}
		size := len(kr.Key) + len(kr.Value) + len(kr.Headers)*partitionpb.HeaderOverhead
		for _, h := range kr.Headers {
			size += len(h.Key) + len(h.Value)
		}
		if size > lim.record {
			return batch{}, 0, &batchError{code: kerr.MessageTooLarge.Code, msg: partitionpb.TooLargeMessage(int(i), size, lim.record)}
		}
		if held += len(kr.Headers) * headerOverhead; held > lim.memory {
			return batch{}, 0, overMemory(count)
		}
		for _, h := range kr.Headers {
			// Kafka's header keys are strings, and protobuf refuses to encode a string
			// that is not UTF-8: stored, it would fail every fetch that reaches it.
			if !utf8.ValidString(h.Key) {
				return batch{}, 0, &batchError{code: kerr.InvalidRecord.Code, msg: fmt.Sprintf("record %d has a header key that is not UTF-8: %q", i, h.Key)}
			}
			r.Headers = append(r.Headers, &partitionpb.Header{Key: h.Key, Value: h.Value})
		}
		b.bytes += size
		b.records = append(b.records, r)
	}
	if len(data) != 0 {
		return batch{}, 0, corrupt("%d bytes after the batch's %d records", len(data), rb.NumRecords)
	}
	return b, held, nil
}

// overMemory is a batch of count records whose records would hold more memory than its
// request has left.
func overMemory(count int) *batchError {
	return &batchError{code: kerr.MessageTooLarge.Code, memory: true,
		msg: fmt.Sprintf("record batch of %d records: the request's records take more memory than its budget", count)}
}

var errTooLarge = errors.New("decompresses past the limit")

// zstdMinWindow is the least window a zstd batch may declare (see decompress).
const zstdMinWindow = 8 << 20

// decompress undoes a batch's compression (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)
// without ever holding more than limit bytes of output.
func decompress(src []byte, codec int16, limit int) ([]byte, error) {
	// A partition's earlier batches may have spent its room: none is left, not a negative
	// amount (zstd's decoder takes no bound below 1).
	limit = max(limit, 0)
	tooLarge := &batchError{code: kerr.MessageTooLarge.Code, msg: fmt.Sprintf("record batch decompresses past %d bytes", limit)}
	bounded := func(r io.Reader) ([]byte, error) {
		out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
		if err != nil {
			return nil, corrupt("decompress record batch: %v", err)
		}
		if len(out) > limit {
			return nil, tooLarge
		}
		return out, nil
	}
	switch codec {
	case 0:
		if len(src) > limit {
			return nil, tooLarge
		}
		// The partition's records were read into an allocation of their own
		// (readProduce): what a partition keeps for tail reads keeps no other's alive.
		return src, nil
	case 1:
		zr, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, corrupt("gzip record batch: %v", err)
		}
		return bounded(zr)
	case 2:
		out, err := unsnappy(src, limit)
		if errors.Is(err, errTooLarge) {
			return nil, tooLarge
		}
		if err != nil {
			return nil, corrupt("snappy record batch: %v", err)
		}
		return out, nil
	case 3:
		return bounded(lz4.NewReader(bytes.NewReader(src)))
	case 4:
		// Its bound is also the largest window it takes: producers' frames declare
		// windows of up to 8 MiB (level 19; 2 MiB at the default level 3) whatever their
		// size, so it is never less, and what it decodes past the limit is refused below.
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(max(limit+1, zstdMinWindow))))
		if err != nil {
			return nil, fmt.Errorf("zstd decoder: %w", err)
		}
		defer d.Close()
		out, err := d.DecodeAll(src, nil)
		// A window past the bound needs more memory than the batch may have.
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) || err == nil && len(out) > limit {
			return nil, tooLarge
		}
		if err != nil {
			return nil, corrupt("zstd record batch: %v", err)
		}
		return out, nil
	}
	return nil, corrupt("unknown compression codec %d", codec)
}

// xerialMagic starts snappy in the framing of the Java client (xerial snappy-java): a
// 16-byte header, then blocks each prefixed by its big-endian length.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

func unsnappy(src []byte, max int) ([]byte, error) {
	block := func(dst, b []byte) ([]byte, error) {
		n, err := s2.DecodedLen(b)
		if err != nil {
			return nil, err
		}
		if len(dst)+n > max {
			return nil, errTooLarge
		}
		out, err := s2.Decode(nil, b)
		return append(dst, out...), err
	}
	if !bytes.HasPrefix(src, xerialMagic) {
		return block(nil, src)
	}
	if len(src) < 16 {
		return nil, errors.New("short xerial header")
	}
	var out []byte
	for b := src[16:]; len(b) > 0; {
		if len(b) < 4 {
			return nil, errors.New("short xerial block length")
		}
		n := int(binary.BigEndian.Uint32(b))
		if n < 0 || n > len(b)-4 {
			return nil, fmt.Errorf("xerial block of %d bytes in %d", n, len(b)-4)
		}
		var err error
		if out, err = block(out, b[4:4+n]); err != nil {
			return nil, err
		}
		b = b[4+n:]
	}
	return out, nil
}

// appendBatch encodes records (ascending offsets) as one uncompressed RecordBatch v2.
func appendBatch(dst []byte, recs []*partitionpb.Record) []byte {
	first := recs[0]
	rb := kmsg.RecordBatch{
		FirstOffset: first.Offset, PartitionLeaderEpoch: -1, Magic: 2,
		LastOffsetDelta: int32(recs[len(recs)-1].Offset - first.Offset),
		FirstTimestamp:  first.TimestampMs, MaxTimestamp: first.TimestampMs,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(recs)),
	}
	var body, scratch []byte
	for _, r := range recs {
		rb.MaxTimestamp = max(rb.MaxTimestamp, r.TimestampMs)
		kr := kmsg.Record{TimestampDelta64: r.TimestampMs - first.TimestampMs, OffsetDelta: int32(r.Offset - first.Offset),
			Key: r.Key, Value: r.Value}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kmsg.Header{Key: h.Key, Value: h.Value})
		}
		// The record's length prefix counts what follows it: encode with length 0 (one
		// byte), then write the real length before the rest.
		scratch = kr.AppendTo(scratch[:0])
		body = binary.AppendVarint(body, int64(len(scratch)-1))
		body = append(body, scratch[1:]...)
	}
	rb.Records = body
	start := len(dst)
	dst = rb.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start+batchLengthAt:], uint32(len(dst)-start-12))
	binary.BigEndian.PutUint32(dst[start+batchCRCAt:], crcOf(dst[start+batchAttrsAt:]))
	return dst
}
