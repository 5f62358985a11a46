package actors

import (
	"reflect"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/coordination"
)

func TestNeighboursSpanAdjacentWantedPieces(t *testing.T) {
	seg := func(object string, offset, bytes int64) coordination.SegmentMeta {
		return coordination.SegmentMeta{Object: object, Offset: offset, ZBytes: bytes}
	}
	n := newNeighbours()
	// Partition runs naming pieces of "o" (adjacent 0-300, then a gap, then 400-500) and
	// of another object.
	n.add([]coordination.SegmentMeta{seg("o", 100, 100), seg("x", 0, 50)})
	n.add([]coordination.SegmentMeta{seg("o", 0, 100), seg("o", 200, 100), seg("o", 400, 100)})
	n.add([]coordination.SegmentMeta{seg("o", 100, 100)}) // named twice: remembered once
	all := func(pieceRange) bool { return true }
	part := func(offset, bytes int64) coordination.SegmentPart {
		return coordination.SegmentPart{Object: "o", Offset: offset, ZBytes: bytes}
	}
	if got, want := n.span(part(100, 100), all), []pieceRange{{0, 100}, {100, 100}, {200, 100}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("span of the middle piece: %v, want %v", got, want)
	}
	if got := n.span(part(400, 100), all); got != nil {
		t.Fatalf("a piece with no adjacent neighbour spans %v", got)
	}
	if got := n.span(part(100, 99), all); got != nil {
		t.Fatalf("a piece the index does not name spans %v", got)
	}
	// Pieces not wanted (cached, being read) end the span.
	notFirst := func(p pieceRange) bool { return p.offset != 0 }
	if got, want := n.span(part(100, 100), notFirst), []pieceRange{{100, 100}, {200, 100}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("span without the first: %v, want %v", got, want)
	}
	if got := n.span(part(200, 100), func(p pieceRange) bool { return p.offset != 100 }); got != nil {
		t.Fatalf("span across an unwanted piece: %v", got)
	}
	// A span stays within neighbourSpanBytes.
	big := newNeighbours()
	big.add([]coordination.SegmentMeta{seg("b", 0, neighbourSpanBytes/2), seg("b", neighbourSpanBytes/2, neighbourSpanBytes/2), seg("b", neighbourSpanBytes, 1)})
	if got := big.span(coordination.SegmentPart{Object: "b", ZBytes: neighbourSpanBytes / 2}, all); len(got) != 2 {
		t.Fatalf("span past its bound: %v", got)
	}
	// Pieces named long ago are no one's next read.
	n.objs["o"].seen = time.Now().Add(-neighbourTTL - time.Second)
	if got := n.span(part(100, 100), all); got != nil {
		t.Fatalf("span of pieces named %v ago: %v", neighbourTTL, got)
	}
	// The objects remembered are bounded.
	for i := range neighbourObjects + 10 {
		n.add([]coordination.SegmentMeta{seg(string(rune('a'+i%26))+time.Duration(i).String(), 0, 1)})
	}
	if len(n.objs) != neighbourObjects || len(n.order) != neighbourObjects {
		t.Fatalf("%d objects remembered (%d in order), want %d", len(n.objs), len(n.order), neighbourObjects)
	}
}
