package grpcmem

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// Field numbers of the messages decodeFetchResponse reads (streamhouse.proto).
const (
	fetchRecords       = 1
	fetchHighWaterMark = 2

	recordKey       = 1
	recordValue     = 2
	recordHeaders   = 3
	recordTimestamp = 4
	recordOffset    = 5
	recordPartition = 6

	headerKey   = 1
	headerValue = 2
)

var errInvalidUTF8 = errors.New("string field contains invalid UTF-8")

// decodeFetchResponse is proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal of a
// FetchResponse but for two things: the keys and values of its records alias b instead
// of being copied out of it one by one, and its records are allocated together. A fetch
// answer of a megabyte holds a thousand records of 1 KiB; copying each into a buffer of
// its own was 18–20% of streamctl bench's CPU in a catch-up read (docs/BENCHMARKS.md).
// b must not change while the records are in use, and keeping any of them keeps b.
func decodeFetchResponse(b []byte, m *pb.FetchResponse) error {
	proto.Reset(m)
	// Count the records first, to allocate them at once.
	n := 0
	err := eachField(b, func(f field) error {
		if f.num == fetchRecords && f.typ == protowire.BytesType {
			n++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fetch response: %w", err)
	}
	recs := make([]pb.Record, n)
	if n > 0 {
		m.Records = make([]*pb.Record, 0, n)
	}
	return eachField(b, func(f field) error {
		switch {
		case f.num == fetchRecords && f.typ == protowire.BytesType:
			r := &recs[len(m.Records)]
			if err := decodeRecord(f.bytes, r); err != nil {
				return fmt.Errorf("fetch response: record %d: %w", len(m.Records), err)
			}
			m.Records = append(m.Records, r)
		case f.num == fetchHighWaterMark && f.typ == protowire.VarintType:
			m.HighWaterMark = int64(f.varint)
		}
		return nil
	})
}

func decodeRecord(b []byte, r *pb.Record) error {
	return eachField(b, func(f field) error {
		switch {
		case f.typ == protowire.BytesType && f.num == recordKey:
			r.Key = f.bytes
		case f.typ == protowire.BytesType && f.num == recordValue:
			r.Value = f.bytes
		case f.typ == protowire.BytesType && f.num == recordHeaders:
			h := &pb.Header{}
			if err := decodeHeader(f.bytes, h); err != nil {
				return fmt.Errorf("header %d: %w", len(r.Headers), err)
			}
			r.Headers = append(r.Headers, h)
		case f.typ == protowire.VarintType && f.num == recordTimestamp:
			r.TimestampMs = int64(f.varint)
		case f.typ == protowire.VarintType && f.num == recordOffset:
			r.Offset = int64(f.varint)
		case f.typ == protowire.VarintType && f.num == recordPartition:
			r.Partition = int32(f.varint)
		}
		return nil
	})
}

func decodeHeader(b []byte, h *pb.Header) error {
	return eachField(b, func(f field) error {
		switch {
		case f.typ == protowire.BytesType && f.num == headerValue:
			h.Value = f.bytes
		case f.typ == protowire.BytesType && f.num == headerKey:
			if !utf8.Valid(f.bytes) { // as proto3 requires of a string
				return errInvalidUTF8
			}
			h.Key = string(f.bytes)
		}
		return nil
	})
}

// field is one field of a message with a varint or a length-delimited value. Fields of
// other wire types, and those of a number or wire type the decoder does not expect, are
// skipped as protobuf skips unknown fields.
type field struct {
	num    protowire.Number
	typ    protowire.Type
	varint uint64
	bytes  []byte // capped: appending to it cannot write over what follows in the message
}

// eachField calls fn with each varint or length-delimited field of message b, in order,
// and stops at the first error, its own or fn's.
func eachField(b []byte, fn func(field) error) error {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		if !num.IsValid() { // ConsumeTag lets numbers past the largest through
			return fmt.Errorf("invalid field number %d", num)
		}
		b = b[l:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.varint, l = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			f.bytes, l = protowire.ConsumeBytes(b)
			f.bytes = f.bytes[:len(f.bytes):len(f.bytes)]
		default:
			l = protowire.ConsumeFieldValue(num, typ, b)
		}
		if l < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(l))
		}
		b = b[l:]
		if typ == protowire.VarintType || typ == protowire.BytesType {
			if err := fn(f); err != nil {
				return err
			}
		}
	}
	return nil
}
