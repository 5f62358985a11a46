package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
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
	batches, err := decodeBatches(raw, 1<<20, 1<<10)
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
		_, err := decodeBatches(c.raw, 1<<20, 1<<10)
		var be *batchError
		if !errors.As(err, &be) || be.code != c.code {
			t.Errorf("%s: %v, want code %d", name, err, c.code)
		}
	}
	if _, err := decodeBatches(good, 1<<20, 5); !isCode(err, kerr.MessageTooLarge.Code) {
		t.Errorf("record over the record limit: %v", err)
	}
	if _, err := decodeBatches(good, 10, 1<<10); !isCode(err, kerr.MessageTooLarge.Code) {
		t.Errorf("batch over the batch limit: %v", err)
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
		batches, err := decodeBatches(raw, 1<<20, 1<<16)
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
					_, _ = decodeBatches(pp.Records, 1<<20, 1<<16)
				}
			}
		}
	})
}
