package segmentstore

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkEncodeBatch is what a partition writer does per segment at the maximum produce
// rate: Encode of 200 records of 1 KiB that LZ4 cannot shrink (random letters, as
// `streamctl bench` sends), from a fresh encoder each time.
func BenchmarkEncodeBatch(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	recs := make([]Record, 200)
	payload := 0
	for i := range recs {
		v := make([]byte, 1024)
		for k := range v {
			v[k] = byte('0' + rng.IntN(64))
		}
		recs[i] = Record{Offset: int64(i), Timestamp: 1700000000000 + int64(i), Value: v}
		payload += len(v)
	}
	b.SetBytes(int64(payload))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode("bench", 0, recs, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
