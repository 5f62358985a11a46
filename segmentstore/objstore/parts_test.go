package objstore

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// A parts reader reads exactly the concatenation of its parts (empty ones included), in
// reads of any size, from any position it seeks to.
func TestPartsReaderIsTheConcatenation(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		parts := make([][]byte, rng.IntN(6))
		var want []byte
		for i := range parts {
			parts[i] = make([]byte, rng.IntN(3)*rng.IntN(50)) // some empty
			for j := range parts[i] {
				parts[i][j] = byte(rng.IntN(256))
			}
			want = append(want, parts[i]...)
		}
		r := newPartsReader(parts)
		if end, err := r.Seek(0, io.SeekEnd); err != nil || end != int64(len(want)) {
			t.Fatalf("trial %d: size %d, %v; want %d", trial, end, err, len(want))
		}
		from := int64(rng.IntN(len(want) + 1))
		if pos, err := r.Seek(from, io.SeekStart); err != nil || pos != from {
			t.Fatalf("trial %d: seek to %d: %d, %v", trial, from, pos, err)
		}
		var got []byte
		buf := make([]byte, 1+rng.IntN(40))
		for {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil || n == 0 {
				t.Fatalf("trial %d: read %d, %v", trial, n, err)
			}
		}
		if !bytes.Equal(got, want[from:]) {
			t.Fatalf("trial %d: read %d bytes from %d, not the concatenation's %d", trial, len(got), from, len(want)-int(from))
		}
	}
	r := newPartsReader([][]byte{[]byte("abc")})
	if _, err := r.Seek(-1, io.SeekStart); err == nil {
		t.Fatal("a negative position was accepted")
	}
	if _, err := r.Seek(0, 7); err == nil {
		t.Fatal("an unknown whence was accepted")
	}
}
