package kafka

import (
	"bytes"
	"compress/gzip"
	"errors"
	"runtime"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"
)

// FuzzDecompress feeds any bytes, as any codec, to what undoes a produce's compression:
// it returns records' bytes of at most its limit or an error with a Kafka code, never
// panics, and never holds more than the limit (a bomb is refused, not expanded).
func FuzzDecompress(f *testing.F) {
	plain := bytes.Repeat([]byte("a record's bytes, "), 200)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(plain)
	_ = zw.Close()
	var lz bytes.Buffer
	lw := lz4.NewWriter(&lz)
	_, _ = lw.Write(plain)
	_ = lw.Close()
	ze, err := zstd.NewWriter(nil)
	if err != nil {
		f.Fatal(err)
	}
	for codec, src := range map[int16][]byte{0: plain, 1: gz.Bytes(), 2: s2.EncodeSnappy(nil, plain), 3: lz.Bytes(), 4: ze.EncodeAll(plain, nil)} {
		f.Add(src, codec, 1<<20)
		f.Add(src, codec, 100) // past the limit
		f.Add(src, codec, -5)  // the partition's room spent by its earlier batches
	}
	f.Fuzz(func(t *testing.T, src []byte, codec int16, limit int) {
		if limit < -1<<20 || limit > 1<<20 {
			return
		}
		out, err := decompress(src, codec, limit)
		if err != nil {
			var be *batchError
			if !errors.As(err, &be) || be.code == 0 {
				t.Fatalf("codec %d: an error without a Kafka code: %v", codec, err)
			}
			return
		}
		if len(out) > max(limit, 0) {
			t.Fatalf("codec %d: %d bytes out, the limit %d", codec, len(out), limit)
		}
	})
}

// A partition's second batch, when its first spent the partition's room, decompresses
// within none: a zstd bomb is refused MESSAGE_TOO_LARGE (a producer splits the batch and
// sends it again) without being expanded. Before, zstd's decoder refused a bound of none
// or less, and the batch was answered CORRUPT_MESSAGE (found by FuzzDecompress).
func TestABatchPastItsPartitionsRoomIsNotExpanded(t *testing.T) {
	ze, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	bomb := ze.EncodeAll(make([]byte, 64<<20), nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = decompress(bomb, 4, -100)
	runtime.ReadMemStats(&after)
	if !isCode(err, kerr.MessageTooLarge.Code) {
		t.Fatalf("a bomb of %d bytes with no room left: %v, want MESSAGE_TOO_LARGE", len(bomb), err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Fatalf("refusing a bomb of %d bytes with no room left allocated %d MiB", len(bomb), grew>>20)
	}
}

// A small zstd batch compressed as a stream, as Java's producer and librdkafka compress,
// declares a window of megabytes whatever its size: it is taken under a limit below its
// window. Before, the limit bounded the window too, and the batch was refused.
func TestASmallZstdStreamWithALargeWindowIsTaken(t *testing.T) {
	var frame bytes.Buffer
	zw, err := zstd.NewWriter(&frame)
	if err != nil {
		t.Fatal(err)
	}
	plain := bytes.Repeat([]byte("a small batch "), 10)
	if _, err := zw.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	// This encoder fits the window to what it compressed; Java's declares its level's.
	const windowDescriptor = 5                // after the magic number and the frame header descriptor
	frame.Bytes()[windowDescriptor] = 12 << 3 // 2^(10+12): 4 MiB
	var h zstd.Header
	if err := h.Decode(frame.Bytes()); err != nil || h.WindowSize != 4<<20 || h.SingleSegment {
		t.Fatalf("the frame's header: %+v %v", h, err)
	}
	out, err := decompress(frame.Bytes(), 4, 1<<20)
	if err != nil || !bytes.Equal(out, plain) {
		t.Fatalf("%d bytes in a frame of a 4 MiB window, limit 1 MiB: %v", len(plain), err)
	}
}
