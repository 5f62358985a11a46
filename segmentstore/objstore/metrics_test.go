package objstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// An instrumented store keeps the semantics of the store it wraps and counts each
// operation under its op and result.
func TestInstrumentedStore(t *testing.T) {
	ctx := context.Background()
	raw, err := objstore.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := objstore.Instrument(raw)
	testConformance(t, s)

	requests := func(op, result string) float64 {
		return harness.Counter(t, "streamhouse_store_requests_total", map[string]string{"op": op, "result": result})
	}
	okPut, missing, failed := requests("put", "ok"), requests("get", "not_found"), requests("get_range", "error")
	if err := s.Put(ctx, "a/b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "a/missing"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("get of a missing object: %v", err)
	}
	if _, err := s.GetRange(ctx, "a/b", 5, 1); !errors.Is(err, objstore.ErrInvalidRange) {
		t.Fatalf("range past the end: %v", err)
	}
	if d := requests("put", "ok") - okPut; d != 1 {
		t.Errorf("put ok counted %v times, want 1", d)
	}
	if d := requests("get", "not_found") - missing; d != 1 {
		t.Errorf("get not_found counted %v times, want 1", d)
	}
	if d := requests("get_range", "error") - failed; d != 1 {
		t.Errorf("get_range error counted %v times, want 1", d)
	}
	if s.String() != raw.String() {
		t.Errorf("String() = %q, want the wrapped store's %q", s.String(), raw.String())
	}
}
