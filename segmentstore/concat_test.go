package segmentstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
)

// Concat of random segments decodes to exactly their records, with a header that
// describes them all.
func TestConcatKeepsEveryRecord(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 11))
		var segs [][]byte
		var all []Record
		next := rng.Int64N(1 << 30)
		for range 1 + rng.IntN(6) {
			recs := randomRecords(rng, next, 1+rng.IntN(100))
			next = recs[len(recs)-1].Offset + 1 + rng.Int64N(3)
			opts := Options{BlockSize: []int{1, 4096, DefaultBlockSize}[rng.IntN(3)], NoCompression: rng.IntN(3) == 0}
			data, err := Encode("orders", 3, recs, opts)
			if err != nil {
				t.Fatal(err)
			}
			segs = append(segs, data)
			all = append(all, recs...)
		}
		data, err := Concat(segs)
		if err != nil {
			t.Fatalf("seed %d: concat: %v", seed, err)
		}
		seg, err := Decode(data)
		if err != nil {
			t.Fatalf("seed %d: decode the concatenation: %v", seed, err)
		}
		if !reflect.DeepEqual(seg.Records, all) {
			t.Fatalf("seed %d: records differ", seed)
		}
		h := seg.Header
		minTs, maxTs := all[0].Timestamp, all[0].Timestamp
		for _, r := range all {
			minTs, maxTs = min(minTs, r.Timestamp), max(maxTs, r.Timestamp)
		}
		if h.Topic != "orders" || h.Partition != 3 || h.BaseOffset != all[0].Offset || h.LastOffset != all[len(all)-1].Offset ||
			int(h.Records) != len(all) || h.MinTimestamp != minTs || h.MaxTimestamp != maxTs {
			t.Fatalf("seed %d: header %+v", seed, h)
		}
		// The ranged reader finds records in the middle of it, too.
		r, err := OpenReader(context.Background(), BytesReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("seed %d: open: %v", seed, err)
		}
		mid := all[len(all)/2].Offset
		if got, err := r.Read(context.Background(), mid, 1); err != nil || len(got) == 0 || got[0].Offset != mid {
			t.Fatalf("seed %d: ranged read from %d: %v", seed, mid, err)
		}
	}
}

func TestConcatRefusesBadInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	enc := func(topic string, partition int32, base int64) []byte {
		data, err := Encode(topic, partition, randomRecords(rng, base, 20), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	a, b := enc("t", 0, 0), enc("t", 0, 1000)
	corrupted := append([]byte(nil), b...)
	corrupted[len(corrupted)/2] ^= 0x40
	for name, tc := range map[string]struct {
		segs [][]byte
		want error
	}{
		"none":            {nil, ErrInvalidInput},
		"out of order":    {[][]byte{b, a}, ErrInvalidInput},
		"the same twice":  {[][]byte{a, a}, ErrInvalidInput},
		"other partition": {[][]byte{a, enc("t", 1, 1000)}, ErrInvalidInput},
		"other topic":     {[][]byte{a, enc("u", 0, 1000)}, ErrInvalidInput},
		"corrupted block": {[][]byte{a, corrupted}, ErrCorrupt},
		"truncated":       {[][]byte{a, b[:len(b)-1]}, ErrCorrupt},
		"too short":       {[][]byte{a, b[:10]}, ErrCorrupt},
	} {
		if out, err := Concat(tc.segs); !errors.Is(err, tc.want) || out != nil {
			t.Errorf("%s: %v, want %v and no output", name, err, tc.want)
		}
	}
}
