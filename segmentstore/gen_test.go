package segmentstore

import (
	"fmt"
	"math/rand/v2"
)

// randomRecords makes n records from base with the shapes the format must survive: null
// and empty keys and values, values larger than a block, many headers, offset gaps and
// timestamps that go backwards or are negative.
func randomRecords(rng *rand.Rand, base int64, n int) []Record {
	recs := make([]Record, n)
	off := base
	ts := rng.Int64N(1<<42) - 1<<20
	for i := range recs {
		r := &recs[i]
		r.Offset = off
		if rng.IntN(8) == 0 {
			off += 1 + rng.Int64N(100) // a gap, as left by compaction
		} else {
			off++
		}
		ts += rng.Int64N(2000) - 500
		r.Timestamp = ts
		r.Key = randomBytes(rng, 64)
		r.Value = randomBytes(rng, 4096)
		if rng.IntN(50) == 0 {
			r.Value = make([]byte, 100<<10+rng.IntN(200<<10))
			for j := range r.Value {
				r.Value[j] = byte(j % 251)
			}
		}
		switch rng.IntN(6) {
		case 0:
			nh := 1 + rng.IntN(64)
			r.Headers = make([]RecordHeader, nh)
			for j := range r.Headers {
				r.Headers[j] = RecordHeader{Key: fmt.Sprintf("h-%d", rng.IntN(1000)), Value: randomBytes(rng, 32)}
			}
		case 1:
			r.Headers = []RecordHeader{{Key: "", Value: nil}}
		}
	}
	return recs
}

// randomBytes returns nil, an empty non-nil slice, or up to max random bytes that are
// partly repetitive, so that LZ4 both does and does not find matches.
func randomBytes(rng *rand.Rand, max int) []byte {
	switch rng.IntN(5) {
	case 0:
		return nil
	case 1:
		return []byte{}
	}
	b := make([]byte, rng.IntN(max+1))
	for i := range b {
		if rng.IntN(3) == 0 {
			b[i] = byte(rng.Uint32())
		} else {
			b[i] = byte('a' + i%7)
		}
	}
	return b
}

// jsonRecords makes n records whose values are ~1 KiB JSON documents of the kind an
// order or click stream carries: repeated field names, varying numbers and ids.
func jsonRecords(n int) []Record {
	rng := rand.New(rand.NewPCG(1, 2))
	recs := make([]Record, n)
	ts := int64(1_764_000_000_000)
	for i := range recs {
		ts += rng.Int64N(3)
		v := fmt.Appendf(nil, `{"order_id":"ord-%016x","customer":{"id":%d,"name":"customer-%d","tier":"%s","email":"user%d@example.com"},"ts":%d,"currency":"EUR","status":"%s","items":[`,
			rng.Uint64(), rng.IntN(1_000_000), rng.IntN(100_000), []string{"gold", "silver", "bronze"}[rng.IntN(3)],
			rng.IntN(1_000_000), ts, []string{"created", "paid", "shipped", "delivered"}[rng.IntN(4)])
		for j := 0; len(v) < 960; j++ {
			if j > 0 {
				v = append(v, ',')
			}
			v = fmt.Appendf(v, `{"sku":"SKU-%06d","qty":%d,"price":%d.%02d,"warehouse":"wh-%d"}`,
				rng.IntN(1_000_000), 1+rng.IntN(5), rng.IntN(500), rng.IntN(100), rng.IntN(20))
		}
		v = append(v, `],"note":"`...)
		for len(v) < 1022 {
			v = append(v, byte('a'+rng.IntN(26)))
		}
		v = append(v, `"}`...)
		recs[i] = Record{
			Offset: int64(i), Timestamp: ts,
			Key:   fmt.Appendf(nil, "customer-%d", rng.IntN(100_000)),
			Value: v,
		}
	}
	return recs
}
