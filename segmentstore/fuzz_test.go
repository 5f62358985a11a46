package segmentstore

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to both decoders. They must never panic, must agree, and
// anything they accept must re-encode to the same records.
func FuzzDecode(f *testing.F) {
	// Small seeds: the fuzzer mutates and minimizes every input, and large ones slow it to
	// a crawl.
	f.Add(smallSegment(f))
	for _, opts := range []Options{{BlockSize: 1500}, {BlockSize: 100, NoCompression: true}} {
		data, err := Encode("fuzz", 1, jsonRecords(3), opts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		seg, err := Decode(data)
		rerr := readAll(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("Decode error %v is neither ErrCorrupt nor ErrUnsupportedVersion", err)
			}
			return
		}
		if rerr != nil {
			t.Fatalf("Decode accepted what the ranged reader rejects: %v", rerr)
		}
		again, err := Encode(seg.Header.Topic, seg.Header.Partition, seg.Records, Options{})
		if err != nil {
			t.Fatalf("re-encode accepted segment: %v", err)
		}
		seg2, err := Decode(again)
		if err != nil || !reflect.DeepEqual(seg2.Records, seg.Records) {
			t.Fatalf("re-encoded segment decodes differently: %v", err)
		}
		ctx := context.Background()
		rd, err := OpenReader(ctx, BytesReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := rd.Read(ctx, 0, 1<<30)
		if err != nil || !reflect.DeepEqual(got, seg.Records) {
			t.Fatalf("ranged read of an accepted segment differs: %v", err)
		}
	})
}

// FuzzConcat joins a valid segment with arbitrary bytes, as a merge joins segments read
// from the store: Concat refuses bad input or carries it so that Decode still refuses the
// result, and what it produces from good input decodes to both inputs' records.
func FuzzConcat(f *testing.F) {
	first, err := Encode("fuzz", 1, []Record{{Offset: 0, Value: []byte("a")}}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	second, err := Encode("fuzz", 1, []Record{{Offset: 1, Value: []byte("b")}, {Offset: 3, Key: []byte("k")}}, Options{BlockSize: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(second)
	f.Add(smallSegment(f))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Concat([][]byte{first, data})
		seg, derr := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) && !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("Concat error %v is not ErrCorrupt, ErrUnsupportedVersion or ErrInvalidInput", err)
			}
			return
		}
		joined, err := Decode(out)
		if derr != nil {
			// Only records inside a block with a valid CRC can be wrong here (Concat
			// checks CRCs, not records): the concatenation must still be refused.
			if err == nil {
				t.Fatalf("Concat hid a bad input: Decode rejects it (%v) but not the concatenation", derr)
			}
			return
		}
		if err != nil {
			t.Fatalf("the concatenation does not decode: %v", err)
		}
		want := append([]Record{{Offset: 0, Value: []byte("a")}}, seg.Records...)
		if !reflect.DeepEqual(joined.Records, want) {
			t.Fatalf("the concatenation holds other records")
		}
	})
}
