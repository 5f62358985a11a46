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
