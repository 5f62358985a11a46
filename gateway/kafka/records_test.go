package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
)

func sampleRecords(n int) []*partitionpb.Record {
	var out []*partitionpb.Record
	for i := range n {
		r := &partitionpb.Record{Offset: int64(40 + i), TimestampMs: int64(1_700_000_000_000 + 7*i), Value: []byte(fmt.Sprintf("value-%d", i))}
		if i%2 == 0 {
			r.Key = []byte(fmt.Sprintf("key-%d", i))
			r.Headers = []*partitionpb.Header{{Key: "h", Value: []byte{byte(i)}}}
		}
		out = append(out, r)
	}
	return out
}

// TestBatchRoundTrip encodes records as a fetch answers them and decodes them as a
// produce reads them: same keys, values, headers and timestamps; and kmsg, the encoding
// clients use, reads the batch with a valid CRC.
func TestBatchRoundTrip(t *testing.T) {
	recs := sampleRecords(5)
	raw := appendBatch(nil, recs)
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(raw); err != nil || rb.NumRecords != 5 || rb.FirstOffset != 40 || rb.LastOffsetDelta != 4 {
		t.Fatalf("kmsg reads %+v: %v", rb, err)
	}
	batches, _, err := decodeBatches(raw, testLimits(1<<20, 1<<10))
	if err != nil || len(batches) != 1 {
		t.Fatalf("decode: %v", err)
	}
	for i, got := range batches[0].records {
		want := recs[i]
		if !bytes.Equal(got.Key, want.Key) || !bytes.Equal(got.Value, want.Value) || got.TimestampMs != want.TimestampMs || len(got.Headers) != len(want.Headers) {
			t.Fatalf("record %d: %v, want %v", i, got, want)
		}
	}
	if batches[0].producerID != -1 {
		t.Fatalf("producer id %d", batches[0].producerID)
	}
}

// TestBadBatchesAreRefused: each defect is refused with the code a client acts on, and
// nothing is decoded.
func TestBadBatchesAreRefused(t *testing.T) {
	good := appendBatch(nil, sampleRecords(3))
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, c := range map[string]struct {
		raw  []byte
		code int16
	}{
		"flipped payload byte": {mutate(func(b []byte) []byte { b[len(b)-2] ^= 1; return b }), kerr.CorruptMessage.Code},
		"magic 1":              {mutate(func(b []byte) []byte { b[16] = 1; return b }), kerr.UnsupportedForMessageFormat.Code},
		"truncated":            {good[:len(good)-3], kerr.CorruptMessage.Code},
		"short":                {good[:30], kerr.CorruptMessage.Code},
		"empty":                {nil, kerr.InvalidRecord.Code},
		"transactional": {mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[batchAttrsAt:], attrTransactional)
			return reCRC(b)
		}), kerr.InvalidRecord.Code},
		"unknown codec": {mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[batchAttrsAt:], 7)
			return reCRC(b)
		}), kerr.CorruptMessage.Code},
	} {
		_, _, err := decodeBatches(c.raw, testLimits(1<<20, 1<<10))
		var be *batchError
		if !errors.As(err, &be) || be.code != c.code {
			t.Errorf("%s: %v, want code %d", name, err, c.code)
		}
	}
	if _, _, err := decodeBatches(good, testLimits(1<<20, 5)); !isCode(err, kerr.MessageTooLarge.Code) {
		t.Errorf("record over the record limit: %v", err)
	}
	if _, _, err := decodeBatches(good, testLimits(10, 1<<10)); !isCode(err, kerr.MessageTooLarge.Code) {
		t.Errorf("batch over the batch limit: %v", err)
	}
}

// testLimits bounds a partition's payload and records' bytes, leaving the rest wide.
func testLimits(payload, record int) batchLimits {
	return batchLimits{payload: payload, memory: 1 << 30, records: 1 << 20, record: record}
}

// TestRecordsCountAgainstTheRequestsMemory: a record takes recordOverhead bytes of memory
// beside its bytes once decoded, and the request's budget counts it, so that a frame of
// empty records cannot decode to twenty times its size; a batch claiming more records
// than its bytes can hold, or than the partition may take, is refused before anything is
// allocated for them.
func TestRecordsCountAgainstTheRequestsMemory(t *testing.T) {
	empty := make([]*partitionpb.Record, 10000)
	for i := range empty {
		empty[i] = &partitionpb.Record{Offset: int64(i), TimestampMs: 1_700_000_000_000}
	}
	raw := appendBatch(nil, empty)
	need := len(raw) - batchHeaderBytes + len(empty)*recordOverhead // uncompressed: the records' bytes and each one's overhead
	lim := batchLimits{payload: 1 << 20, memory: need, records: 1 << 20, record: 1 << 10}
	if batches, memory, err := decodeBatches(raw, lim); err != nil || len(batches[0].records) != len(empty) || memory != need {
		t.Fatalf("%d empty records (%d bytes of frame) with %d bytes of budget: %d bytes, %v", len(empty), len(raw), need, memory, err)
	}
	lim.memory = need - 1
	if _, _, err := decodeBatches(raw, lim); !isCode(err, kerr.MessageTooLarge.Code) {
		t.Fatalf("%d empty records with a byte less of budget: %v, want MESSAGE_TOO_LARGE", len(empty), err)
	}
	if recordOverhead < 100 {
		t.Fatalf("a decoded record counts %d bytes: less than its partitionpb.Record", recordOverhead)
	}

	// A batch of one record claiming 2^31-1 (its last offset delta to match, its CRC right).
	claim := func(n int32) []byte {
		b := appendBatch(nil, sampleRecords(1))
		binary.BigEndian.PutUint32(b[23:], uint32(n-1)) // last offset delta
		binary.BigEndian.PutUint32(b[57:], uint32(n))   // record count
		return reCRC(b)
	}
	for name, c := range map[string]struct {
		raw  []byte
		lim  batchLimits
		code int16
	}{
		"past the partition's records": {claim(math.MaxInt32), batchLimits{payload: 1 << 20, memory: 1 << 30, records: 100000, record: 1 << 10}, kerr.MessageTooLarge.Code},
		"past the memory budget":       {claim(math.MaxInt32), batchLimits{payload: 1 << 20, memory: 1 << 30, records: math.MaxInt32, record: 1 << 10}, kerr.MessageTooLarge.Code},
		"past what its bytes can hold": {claim(50000), batchLimits{payload: 1 << 20, memory: 1 << 40, records: math.MaxInt32, record: 1 << 10}, kerr.CorruptMessage.Code},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _, err := decodeBatches(c.raw, c.lim)
		runtime.ReadMemStats(&after)
		if !isCode(err, c.code) {
			t.Errorf("%s: %v, want code %d", name, err, c.code)
		}
		if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 64<<10 {
			t.Errorf("%s: %d bytes allocated to refuse a batch of %d bytes", name, allocated, len(c.raw))
		}
	}
}

func isCode(err error, code int16) bool {
	var be *batchError
	return errors.As(err, &be) && be.code == code
}

func reCRC(b []byte) []byte {
	binary.BigEndian.PutUint32(b[batchCRCAt:], crcOf(b[batchAttrsAt:]))
	return b
}

// TestDecompressionIsBounded: a batch that inflates past the limit is refused before it
// is held in memory, whatever its codec.
func TestDecompressionIsBounded(t *testing.T) {
	for codec := int16(1); codec <= 4; codec++ {
		if _, err := decompress([]byte("not compressed at all"), codec, 1<<20); !isCode(err, kerr.CorruptMessage.Code) {
			t.Errorf("codec %d, garbage: %v", codec, err)
		}
	}
}

func FuzzRecordBatches(f *testing.F) {
	f.Add(appendBatch(nil, sampleRecords(3)), false)
	f.Add(appendBatch(appendBatch(nil, sampleRecords(1)), sampleRecords(2)), false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, raw []byte, fixCRC bool) {
		// With fixCRC the first batch's checksum is made right, so that the fuzzer gets
		// past it into the records.
		if fixCRC && len(raw) >= batchHeaderBytes {
			reCRC(raw)
		}
		batches, _, err := decodeBatches(raw, testLimits(1<<20, 1<<16))
		if err != nil {
			var be *batchError
			if !errors.As(err, &be) || be.code == 0 {
				t.Fatalf("error without a Kafka code: %v", err)
			}
			return
		}
		for _, b := range batches {
			if len(b.records) == 0 {
				t.Fatal("a batch decoded without records")
			}
		}
	})
}

// FuzzRequestFrame feeds request frames to the header parser and the request decoder:
// they return an error or a request, never panic.
func FuzzRequestFrame(f *testing.F) {
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 9
	f.Add((&kmsg.RequestFormatter{}).AppendRequest(nil, req, 1)[4:])
	p := kmsg.NewPtrProduceRequest()
	p.Version = 9
	p.Acks = -1
	p.Topics = []kmsg.ProduceRequestTopic{{Topic: "t", Partitions: []kmsg.ProduceRequestTopicPartition{{Records: appendBatch(nil, sampleRecords(2))}}}}
	f.Add((&kmsg.RequestFormatter{}).AppendRequest(nil, p, 2)[4:])
	f.Fuzz(func(t *testing.T, frame []byte) {
		h, body, err := parseHeader(frame)
		if err != nil || !supported(h.key, h.version) {
			return
		}
		kreq, err := decodeRequest(h, body)
		if err != nil {
			return
		}
		if pr, ok := kreq.(*kmsg.ProduceRequest); ok {
			for _, tp := range pr.Topics {
				for _, pp := range tp.Partitions {
					_, _, _ = decodeBatches(pp.Records, testLimits(1<<20, 1<<16))
				}
			}
		}
	})
}

// TestHeadersCountAgainstTheLimits: each header counts partitionpb.HeaderOverhead toward
// the record limit and what it holds decoded toward the request's memory, so that a record
// of thousands of empty headers (a few bytes each in a frame, tens in memory, at every
// hop and every read) is refused rather than counted as empty; and a header key that is
// not UTF-8, which no gRPC consumer could be sent, is refused as an invalid record.
func TestHeadersCountAgainstTheLimits(t *testing.T) {
	withHeaders := func(n int, key string) []byte {
		r := &partitionpb.Record{TimestampMs: 1_700_000_000_000}
		for range n {
			r.Headers = append(r.Headers, &partitionpb.Header{Key: key})
		}
		return appendBatch(nil, []*partitionpb.Record{r})
	}
	for name, c := range map[string]struct {
		raw    []byte
		record int
		code   int16
	}{
		// Longer than any record within the limit can be: refused before it is decoded.
		"10,000 empty headers, a 1 KiB limit": {withHeaders(10000, ""), 1 << 10, kerr.MessageTooLarge.Code},
		// Within the bytes, past the limit by what its headers count.
		"20 empty headers, a limit of 20 headers less a byte": {withHeaders(20, ""), 20*partitionpb.HeaderOverhead - 1, kerr.MessageTooLarge.Code},
		"a header key that is not UTF-8":                      {withHeaders(1, "\xff"), 1 << 10, kerr.InvalidRecord.Code},
	} {
		if _, _, err := decodeBatches(c.raw, testLimits(1<<20, c.record)); !isCode(err, c.code) {
			t.Errorf("%s: %v, want code %d", name, err, c.code)
		}
	}
	// Refused before it is decoded: kmsg would take 40 bytes a header to decode it.
	many := withHeaders(100000, "")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := decodeBatches(many, testLimits(1<<20, 1<<10))
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; !isCode(err, kerr.MessageTooLarge.Code) || grew > 1<<20 {
		t.Fatalf("100,000 empty headers, a 1 KiB limit: %v, %d bytes allocated", err, grew)
	}
	if b, _, err := decodeBatches(withHeaders(20, "h"), testLimits(1<<20, 20*(partitionpb.HeaderOverhead+1))); err != nil ||
		len(b[0].records[0].Headers) != 20 || b[0].bytes != 20*(partitionpb.HeaderOverhead+1) {
		t.Fatalf("20 headers of one byte at a limit that fits them: %v", err)
	}

	raw := withHeaders(1000, "")
	need := len(raw) - batchHeaderBytes + recordOverhead + 1000*headerOverhead
	lim := batchLimits{payload: 1 << 20, memory: need, records: 1 << 20, record: 1 << 20}
	if _, memory, err := decodeBatches(raw, lim); err != nil || memory != need {
		t.Fatalf("1000 empty headers with %d bytes of budget: %d bytes held, %v", need, memory, err)
	}
	lim.memory = need - 1
	if _, _, err := decodeBatches(raw, lim); !isCode(err, kerr.MessageTooLarge.Code) {
		t.Fatalf("1000 empty headers with a byte less of budget: %v, want MESSAGE_TOO_LARGE", err)
	}
}
