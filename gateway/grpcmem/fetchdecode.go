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
// its own was a fifth of streamctl bench's CPU in a catch-up read (docs/BENCHMARKS.md).
// b must not change while the records are in use, and keeping any of them keeps b.
func decodeFetchResponse(b []byte, m *pb.FetchResponse) error {
	proto.Reset(m)
	// Count the records first, to allocate them at once.
	n := 0
	for rest := b; len(rest) > 0; {
		num, typ, l := consumeTag(rest)
		if l < 0 {
			return fmt.Errorf("fetch response: %w", protowire.ParseError(l))
		}
		v := protowire.ConsumeFieldValue(num, typ, rest[l:])
		if v < 0 {
			return fmt.Errorf("fetch response: field %d: %w", num, protowire.ParseError(v))
		}
		l += v
		if num == fetchRecords && typ == protowire.BytesType {
			n++
		}
		rest = rest[l:]
	}
	recs := make([]pb.Record, n)
	if n > 0 {
		m.Records = make([]*pb.Record, 0, n)
	}
	for len(b) > 0 {
		num, typ, l := consumeTag(b)
		if l < 0 {
			return fmt.Errorf("fetch response: %w", protowire.ParseError(l))
		}
		b = b[l:]
		switch {
		case num == fetchRecords && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return fmt.Errorf("fetch response: record %d: %w", len(m.Records), protowire.ParseError(l))
			}
			r := &recs[len(m.Records)]
			if err := decodeRecord(v, r); err != nil {
				return fmt.Errorf("fetch response: record %d: %w", len(m.Records), err)
			}
			m.Records = append(m.Records, r)
			b = b[l:]
		case num == fetchHighWaterMark && typ == protowire.VarintType:
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return fmt.Errorf("fetch response: high-water mark: %w", protowire.ParseError(l))
			}
			m.HighWaterMark = int64(v)
			b = b[l:]
		default:
			if b, l = skipField(num, typ, b); l < 0 {
				return fmt.Errorf("fetch response: field %d: %w", num, protowire.ParseError(l))
			}
		}
	}
	return nil
}

func decodeRecord(b []byte, r *pb.Record) error {
	for len(b) > 0 {
		num, typ, l := consumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		switch {
		case typ == protowire.BytesType && (num == recordKey || num == recordValue || num == recordHeaders):
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return protowire.ParseError(l)
			}
			b = b[l:]
			switch num {
			case recordKey:
				r.Key = v[:len(v):len(v)]
			case recordValue:
				r.Value = v[:len(v):len(v)]
			default:
				h := &pb.Header{}
				if err := decodeHeader(v, h); err != nil {
					return fmt.Errorf("header %d: %w", len(r.Headers), err)
				}
				r.Headers = append(r.Headers, h)
			}
		case typ == protowire.VarintType && (num == recordTimestamp || num == recordOffset || num == recordPartition):
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return protowire.ParseError(l)
			}
			b = b[l:]
			switch num {
			case recordTimestamp:
				r.TimestampMs = int64(v)
			case recordOffset:
				r.Offset = int64(v)
			default:
				r.Partition = int32(v)
			}
		default:
			if b, l = skipField(num, typ, b); l < 0 {
				return protowire.ParseError(l)
			}
		}
	}
	return nil
}

func decodeHeader(b []byte, h *pb.Header) error {
	for len(b) > 0 {
		num, typ, l := consumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		if typ != protowire.BytesType || (num != headerKey && num != headerValue) {
			if b, l = skipField(num, typ, b); l < 0 {
				return protowire.ParseError(l)
			}
			continue
		}
		v, l := protowire.ConsumeBytes(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		if num == headerValue {
			h.Value = v[:len(v):len(v)]
			continue
		}
		if !utf8.Valid(v) { // as proto3 requires of a string
			return errInvalidUTF8
		}
		h.Key = string(v)
	}
	return nil
}

// consumeTag is protowire.ConsumeTag, which also refuses field numbers above the largest
// valid one, as protobuf's decoder does.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, l := protowire.ConsumeTag(b)
	if l >= 0 && !num.IsValid() {
		return 0, 0, -2 // protowire's code of an invalid field number, for ParseError
	}
	return num, typ, l
}

// skipField skips the value of a field this decoder does not keep: unknown, or known
// but with another wire type, which protobuf treats as unknown.
func skipField(num protowire.Number, typ protowire.Type, b []byte) ([]byte, int) {
	l := protowire.ConsumeFieldValue(num, typ, b)
	if l < 0 {
		return b, l
	}
	return b[l:], l
}
