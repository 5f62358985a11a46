package actors

import (
	"slices"
	"testing"

	"github.com/streamhouse/streamhouse/coordination"
)

func TestSegmentIndexFindsTheSegmentHoldingAnOffset(t *testing.T) {
	var x segmentIndex
	if _, ok := x.lookup(0, 8); ok {
		t.Fatal("an empty cache answered")
	}
	// Segments [10,19] [20,24] [25,39] [40,40].
	x.store([]coordination.SegmentMeta{{Base: 10, Last: 19}, {Base: 20, Last: 24}, {Base: 25, Last: 39}, {Base: 40, Last: 40}}, x.generation())
	for _, c := range []struct {
		from, n   int64
		wantBases []int64
	}{
		{10, 8, []int64{10, 20, 25, 40}},
		{19, 2, []int64{10, 20}},
		{20, 8, []int64{20, 25, 40}},
		{33, 1, []int64{25}},
		{40, 8, []int64{40}},
	} {
		got, ok := x.lookup(c.from, int(c.n))
		var bases []int64
		for _, s := range got {
			bases = append(bases, s.Base)
		}
		if !ok || !slices.Equal(bases, c.wantBases) {
			t.Errorf("lookup(%d, %d) = %v, %v; want %v", c.from, c.n, bases, ok, c.wantBases)
		}
	}
	for _, from := range []int64{0, 9, 41, 1000} {
		if got, ok := x.lookup(from, 8); ok {
			t.Errorf("lookup(%d) outside the cached run answered %v", from, got)
		}
	}
	// The caller may keep what lookup returned while the cache moves on.
	got, _ := x.lookup(10, 1)
	x.store([]coordination.SegmentMeta{{Base: 41, Last: 50}}, x.generation())
	if got[0].Base != 10 {
		t.Fatalf("a returned segment changed under its reader: %+v", got[0])
	}
	if _, ok := x.lookup(10, 1); ok {
		t.Fatal("a replaced run still answered")
	}
	x.reset()
	if _, ok := x.lookup(45, 1); ok {
		t.Fatal("a reset cache answered")
	}
}

// Linked segments name up to maxLinkParts pieces each: a cached run keeps at most
// indexPieces of them (and always its first segment), so a reader's cache stays small.
func TestSegmentIndexBoundsThePiecesItKeeps(t *testing.T) {
	var x segmentIndex
	var run []coordination.SegmentMeta
	for i := range int64(indexRun) {
		m := coordination.SegmentMeta{Base: i * 1000, Last: i*1000 + 999}
		for k := range int64(maxLinkParts) {
			m.Parts = append(m.Parts, coordination.SegmentPart{Object: "o", Base: m.Base + k, Last: m.Base + k})
		}
		run = append(run, m)
	}
	x.store(run, x.generation())
	want := indexPieces / maxLinkParts
	if _, ok := x.lookup(int64(want-1)*1000, 1); !ok {
		t.Errorf("segment %d of the run is not cached", want-1)
	}
	if got, ok := x.lookup(int64(want)*1000, 1); ok {
		t.Errorf("segment %d of the run is cached, beyond %d pieces: %v", want, indexPieces, got[0].Base)
	}
	// A single segment is kept whatever its pieces.
	run[0].Parts = append(run[0].Parts, make([]coordination.SegmentPart, indexPieces)...)
	x.store(run, x.generation())
	if got, ok := x.lookup(0, indexRun); !ok || len(got) != 1 {
		t.Errorf("a run whose first segment has %d pieces: cached %d segments, %v", len(run[0].Parts), len(got), ok)
	}
}
