package segmentstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
)

// smallSegment has every section and feature: several blocks, null and empty fields,
// headers, an offset gap.
func smallSegment(t testing.TB) []byte {
	t.Helper()
	recs := []Record{
		{Offset: 100, Timestamp: 1000, Key: []byte("k1"), Value: []byte(`{"a":1,"a":1,"a":1}`)},
		{Offset: 101, Timestamp: 999, Key: nil, Value: []byte{}},
		{Offset: 105, Timestamp: 1010, Key: []byte{}, Value: nil, Headers: []RecordHeader{{Key: "trace", Value: []byte("abc")}, {Key: "n", Value: nil}}},
		{Offset: 106, Timestamp: 1011, Key: []byte("k4"), Value: []byte("hello hello hello hello hello")},
		{Offset: 107, Timestamp: 1012, Key: []byte("k5"), Value: []byte("v")},
	}
	data, err := Encode("orders", 7, recs, Options{BlockSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// readAll reads a segment the way an agent does: trailer and footer, header, every block.
func readAll(data []byte) error {
	ctx := context.Background()
	rd, err := OpenReader(ctx, BytesReader(data), int64(len(data)))
	if err != nil {
		return err
	}
	if _, err := rd.Header(ctx); err != nil {
		return err
	}
	for i := range rd.Index() {
		if _, err := rd.ReadBlock(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

func TestEveryByteFlipIsDetected(t *testing.T) {
	data := smallSegment(t)
	if len(mustDecode(t, data).Index) < 3 {
		t.Fatal("the test segment should have several blocks")
	}
	flips := []byte{0xff, 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80}
	for pos := range data {
		for _, x := range flips {
			bad := append([]byte(nil), data...)
			bad[pos] ^= x
			if _, err := Decode(bad); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d ^ %#x: Decode returned %v, want ErrCorrupt", pos, x, err)
			}
			if err := readAll(bad); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d ^ %#x: ranged reader returned %v, want ErrCorrupt", pos, x, err)
			}
		}
	}
}

func TestEveryTruncationIsDetected(t *testing.T) {
	data := smallSegment(t)
	for n := range len(data) {
		if _, err := Decode(data[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("first %d of %d bytes: Decode returned %v, want ErrCorrupt", n, len(data), err)
		}
		if err := readAll(data[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("first %d of %d bytes: ranged reader returned %v, want ErrCorrupt", n, len(data), err)
		}
		// Losing the head instead of the tail is just as visible.
		if _, err := Decode(data[len(data)-n:]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("last %d of %d bytes: Decode returned %v, want ErrCorrupt", n, len(data), err)
		}
	}
	if _, err := Decode(append(append([]byte(nil), data...), 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a trailing extra byte: Decode returned %v, want ErrCorrupt", err)
	}
}

func TestRandomGarbageIsCorrupt(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for range 2000 {
		b := make([]byte, rng.IntN(400))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%d random bytes: Decode returned %v, want ErrCorrupt", len(b), err)
		}
	}
}

func TestNewerVersionIsUnsupported(t *testing.T) {
	data := smallSegment(t)
	// Rewrite the trailer as a future writer would, with a valid CRC.
	t2, err := ParseTrailer(data[len(data)-TrailerLen:], int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	t2.Version = 2
	future := appendTrailer(append([]byte(nil), data[:len(data)-TrailerLen]...), t2)
	_, err = Decode(future)
	if !errors.Is(err, ErrUnsupportedVersion) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("version 2 segment: %v, want ErrUnsupportedVersion", err)
	}
}

// mustDecode decodes data that the test knows to be valid.
func mustDecode(t testing.TB, data []byte) *Segment {
	t.Helper()
	seg, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return seg
}
