package segmentstore

import "encoding/binary"

// Record is one entry of a partition's log.
//
// A nil Key or Value is null; a non-nil empty slice is an empty value. The distinction
// survives a round trip through a segment, as Kafka users expect.
type Record struct {
	Offset    int64
	Timestamp int64 // milliseconds since the Unix epoch, as given by the producer or agent
	Key       []byte
	Value     []byte
	Headers   []RecordHeader
}

// RecordHeader is one application header of a record. A nil Value is null.
type RecordHeader struct {
	Key   string
	Value []byte
}

// Size is the number of payload bytes a record carries (key, value and headers), the
// figure used for batching and fetch limits.
func (r *Record) Size() int {
	n := len(r.Key) + len(r.Value)
	for i := range r.Headers {
		n += len(r.Headers[i].Key) + len(r.Headers[i].Value)
	}
	return n
}

// maxEncodedLen bounds the bytes appendRecord writes for r: its payload, and a varint of
// at most binary.MaxVarintLen64 bytes for each delta, length and count.
func (r *Record) maxEncodedLen() int {
	return r.Size() + (5+2*len(r.Headers))*binary.MaxVarintLen64
}

// Counted is what the record counts toward a fetch's bytes: its payload, and what each
// header holds decoded (HeaderOverhead), so that records of thousands of empty headers
// do not count as empty, and a fetch of them stays within its bytes.
func (r *Record) Counted() int { return r.Size() + len(r.Headers)*int(HeaderOverhead) }

// Take appends to out the records of recs with offsets ≥ from while what they count
// (Counted) keeps size (what out counts already) within maxBytes. Like a Kafka fetch, the first record
// is taken whatever its size, so that a reader always progresses. It returns the new out
// and size, and full when a record did not fit: the caller should stop reading.
func Take(out []Record, size int, recs []Record, from int64, maxBytes int) ([]Record, int, bool) {
	for i := range recs {
		if recs[i].Offset < from {
			continue
		}
		s := recs[i].Counted()
		if len(out) > 0 && size+s > maxBytes {
			return out, size, true
		}
		if out == nil {
			// Room for maxBytes of records the size of this one: a fetch takes from
			// many blocks, and growing by doubling would copy its records again and
			// again (each copy a large allocation for a fetch of a thousand).
			out = make([]Record, 0, min((maxBytes-size)/max(s, 1)+1, maxTakeCap))
		}
		out = append(out, recs[i])
		size += s
	}
	return out, size, false
}

// maxTakeCap bounds the room Take makes up front, for tiny records and large fetches.
const maxTakeCap = 4096
