package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/segmentstore"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

// testConformance checks the semantics every backend promises (see the package doc).
func testConformance(t *testing.T, s objstore.Store) {
	ctx := context.Background()
	mustPut := func(key string, data []byte) {
		t.Helper()
		if err := s.Put(ctx, key, data); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	keys := func(prefix string) []string {
		t.Helper()
		infos, err := s.List(ctx, prefix)
		if err != nil {
			t.Fatalf("list %q: %v", prefix, err)
		}
		out := []string{}
		for _, i := range infos {
			out = append(out, i.Key)
		}
		return out
	}

	t.Run("check", func(t *testing.T) {
		if err := s.Check(ctx); err != nil {
			t.Fatal(err)
		}
	})

	// The store's clock is the one its objects' ModTime comes from (the sweeper judges
	// their age by it): an object put between two readings of it was modified between
	// them, to the second the clock is read to.
	t.Run("clock", func(t *testing.T) {
		before, err := s.Clock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mustPut("clock/probe", []byte("now"))
		after, err := s.Clock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Head(ctx, "clock/probe")
		if err != nil {
			t.Fatal(err)
		}
		if info.ModTime.Before(before.Add(-time.Second)) || info.ModTime.After(after.Add(time.Second)) || after.Before(before) {
			t.Fatalf("object modified at %v, put between the store's clock at %v and %v", info.ModTime, before, after)
		}
		if d := time.Since(after); d < -2*time.Second || d > 10*time.Second {
			t.Fatalf("the store's clock %v is %v from this machine's, on the same machine", after, d)
		}
		if err := s.Delete(ctx, "clock/probe"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("put get overwrite", func(t *testing.T) {
		mustPut("a/one", []byte("first"))
		mustPut("a/one", []byte("second version"))
		got, err := s.Get(ctx, "a/one")
		if err != nil || string(got) != "second version" {
			t.Fatalf("get: %q, %v", got, err)
		}
		info, err := s.Head(ctx, "a/one")
		if err != nil || info.Size != 14 || info.Key != "a/one" || info.ModTime.IsZero() {
			t.Fatalf("head: %+v, %v", info, err)
		}
		if ok, err := objstore.Exists(ctx, s, "a/one"); !ok || err != nil {
			t.Fatalf("exists: %v, %v", ok, err)
		}
	})

	t.Run("empty and large objects", func(t *testing.T) {
		mustPut("sizes/empty", []byte{})
		if got, err := s.Get(ctx, "sizes/empty"); err != nil || len(got) != 0 {
			t.Fatalf("get empty: %d bytes, %v", len(got), err)
		}
		if _, err := s.GetRange(ctx, "sizes/empty", 0, 1); !errors.Is(err, objstore.ErrInvalidRange) {
			t.Fatalf("range of an empty object: %v, want ErrInvalidRange", err)
		}
		big := make([]byte, 6<<20+17)
		for i := range big {
			big[i] = byte(rand.Uint32())
		}
		mustPut("sizes/big", big)
		if got, err := s.Get(ctx, "sizes/big"); err != nil || !bytes.Equal(got, big) {
			t.Fatalf("get big: %d bytes, %v", len(got), err)
		}
		if got, err := s.GetRange(ctx, "sizes/big", 5<<20, 1<<20); err != nil || !bytes.Equal(got, big[5<<20:6<<20]) {
			t.Fatalf("range of big: %d bytes, %v", len(got), err)
		}
	})

	t.Run("an object put in parts", func(t *testing.T) {
		big := make([]byte, 3<<20+5)
		for i := range big {
			big[i] = byte(rand.Uint32())
		}
		parts := [][]byte{[]byte("head-"), {}, big[:1<<20], big[1<<20:], []byte("-tail")}
		if err := s.Put(ctx, "parts/obj", parts...); err != nil {
			t.Fatal(err)
		}
		want := bytes.Join(parts, nil)
		if got, err := s.Get(ctx, "parts/obj"); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("get: %d bytes, %v; want the %d of the parts", len(got), err, len(want))
		}
		if info, err := s.Head(ctx, "parts/obj"); err != nil || info.Size != int64(len(want)) {
			t.Fatalf("head: %+v, %v", info, err)
		}
		if got, err := s.GetRange(ctx, "parts/obj", 1<<20, 10); err != nil || !bytes.Equal(got, want[1<<20:1<<20+10]) {
			t.Fatalf("range across parts: %q, %v", got, err)
		}
		if err := s.Put(ctx, "parts/none"); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(ctx, "parts/none"); err != nil || len(got) != 0 {
			t.Fatalf("an object of no parts: %d bytes, %v", len(got), err)
		}
	})

	t.Run("missing objects", func(t *testing.T) {
		if _, err := s.Get(ctx, "nope/x"); !errors.Is(err, objstore.ErrNotFound) {
			t.Fatalf("get: %v, want ErrNotFound", err)
		}
		if _, err := s.GetRange(ctx, "nope/x", 0, 10); !errors.Is(err, objstore.ErrNotFound) {
			t.Fatalf("get range: %v, want ErrNotFound", err)
		}
		if _, err := s.Head(ctx, "nope/x"); !errors.Is(err, objstore.ErrNotFound) {
			t.Fatalf("head: %v, want ErrNotFound", err)
		}
		if ok, err := objstore.Exists(ctx, s, "nope/x"); ok || err != nil {
			t.Fatalf("exists: %v, %v", ok, err)
		}
		if err := s.Delete(ctx, "nope/x"); err != nil {
			t.Fatalf("delete of a missing object: %v", err)
		}
	})

	t.Run("ranges", func(t *testing.T) {
		mustPut("r/obj", []byte("0123456789"))
		for _, c := range []struct {
			off, n int64
			want   string
		}{{0, 10, "0123456789"}, {3, 4, "3456"}, {9, 1, "9"}, {7, 100, "789"}} {
			got, err := s.GetRange(ctx, "r/obj", c.off, c.n)
			if err != nil || string(got) != c.want {
				t.Errorf("range [%d, +%d): %q, %v; want %q", c.off, c.n, got, err, c.want)
			}
		}
		for _, c := range [][2]int64{{10, 1}, {11, 5}, {-1, 3}, {0, 0}, {2, -1}} {
			if _, err := s.GetRange(ctx, "r/obj", c[0], c[1]); !errors.Is(err, objstore.ErrInvalidRange) {
				t.Errorf("range [%d, +%d): %v, want ErrInvalidRange", c[0], c[1], err)
			}
		}
		if _, err := (objstore.Object{Store: s, Key: "r/obj"}).ReadRange(ctx, 7, 100); !errors.Is(err, objstore.ErrInvalidRange) {
			t.Errorf("exact read past the end: %v, want ErrInvalidRange", err)
		}
	})

	t.Run("adjacent parts", func(t *testing.T) {
		mustPut("p/obj", []byte("0123456789"))
		got, err := objstore.GetParts(ctx, s, "p/obj", 2, []int64{3, 1, 4})
		if err != nil || len(got) != 3 || string(got[0]) != "234" || string(got[1]) != "5" || string(got[2]) != "6789" {
			t.Fatalf("parts of [2, +8): %q, %v", got, err)
		}
		// Each part is a buffer of its own: a cache entry made of one must not pin the others.
		if cap(got[0]) != 3 || cap(got[1]) != 1 {
			t.Errorf("parts share a buffer: capacities %d, %d", cap(got[0]), cap(got[1]))
		}
		for _, c := range []struct {
			off   int64
			sizes []int64
		}{{8, []int64{1, 2}}, {10, []int64{1}}, {-1, []int64{1}}, {0, nil}, {0, []int64{2, 0}}, {0, []int64{-1}}} {
			if _, err := objstore.GetParts(ctx, s, "p/obj", c.off, c.sizes); !errors.Is(err, objstore.ErrInvalidRange) {
				t.Errorf("parts %v at %d: %v, want ErrInvalidRange", c.sizes, c.off, err)
			}
		}
		if _, err := objstore.GetParts(ctx, s, "nope/p", 0, []int64{1, 1}); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("parts of a missing object: %v, want ErrNotFound", err)
		}
	})

	t.Run("list", func(t *testing.T) {
		for _, k := range []string{"l/t/1/b", "l/t/1/a", "l/t/10/a", "l/t/2/a", "l/u/0/a", "l/t.x"} {
			mustPut(k, []byte(k))
		}
		cases := map[string][]string{
			"l/t/1/":  {"l/t/1/a", "l/t/1/b"},
			"l/t/1":   {"l/t/1/a", "l/t/1/b", "l/t/10/a"},
			"l/t":     {"l/t.x", "l/t/1/a", "l/t/1/b", "l/t/10/a", "l/t/2/a"},
			"l/":      {"l/t.x", "l/t/1/a", "l/t/1/b", "l/t/10/a", "l/t/2/a", "l/u/0/a"},
			"l/zz":    {},
			"l/t/2/a": {"l/t/2/a"},
		}
		for prefix, want := range cases {
			if got := keys(prefix); !reflect.DeepEqual(got, want) {
				t.Errorf("list %q = %v, want %v", prefix, got, want)
			}
		}
		infos, err := s.List(ctx, "l/t/2/")
		if err != nil || len(infos) != 1 || infos[0].Size != int64(len("l/t/2/a")) {
			t.Errorf("list sizes: %+v, %v", infos, err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		mustPut("d/x", []byte("x"))
		if err := s.Delete(ctx, "d/x"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "d/x"); !errors.Is(err, objstore.ErrNotFound) {
			t.Fatalf("get after delete: %v", err)
		}
		if got := keys("d/"); len(got) != 0 {
			t.Fatalf("list after delete: %v", got)
		}
	})

	t.Run("bad keys change nothing", func(t *testing.T) {
		before := keys("")
		for _, k := range []string{"", "/abs", "a//b", "a/../b", "..", "./a", "a/", "a\\b", "nul\x00", "\xff\xfe", string(make([]byte, 1025)), "x/.tmp-1"} {
			if err := s.Put(ctx, k, []byte("v")); !errors.Is(err, objstore.ErrInvalidKey) {
				t.Errorf("put %q: %v, want ErrInvalidKey", k, err)
			}
			if _, err := s.Get(ctx, k); !errors.Is(err, objstore.ErrInvalidKey) {
				t.Errorf("get %q: %v, want ErrInvalidKey", k, err)
			}
			if err := s.Delete(ctx, k); !errors.Is(err, objstore.ErrInvalidKey) {
				t.Errorf("delete %q: %v, want ErrInvalidKey", k, err)
			}
		}
		if _, err := s.List(ctx, "/x"); !errors.Is(err, objstore.ErrInvalidKey) {
			t.Errorf("list /x: %v, want ErrInvalidKey", err)
		}
		if after := keys(""); !reflect.DeepEqual(after, before) {
			t.Errorf("bad keys changed the store: %v -> %v", before, after)
		}
	})

	t.Run("concurrent writers", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for i := range 32 {
			wg.Go(func() {
				key := fmt.Sprintf("c/%02d", i)
				if err := s.Put(ctx, key, []byte(key)); err != nil {
					errs <- err
					return
				}
				if got, err := s.Get(ctx, key); err != nil || string(got) != key {
					errs <- fmt.Errorf("get %s: %q, %v", key, got, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if got := keys("c/"); len(got) != 32 {
			t.Errorf("%d objects after 32 concurrent puts", len(got))
		}
	})

	t.Run("segment read through ranged gets", func(t *testing.T) {
		recs := make([]segmentstore.Record, 2000)
		for i := range recs {
			recs[i] = segmentstore.Record{Offset: 500 + int64(i), Timestamp: int64(i), Value: fmt.Appendf(nil, "value-%d-%s", i, bytes.Repeat([]byte("x"), i%300))}
		}
		data, err := segmentstore.Encode("orders", 2, recs, segmentstore.Options{BlockSize: 16 << 10})
		if err != nil {
			t.Fatal(err)
		}
		mustPut("data/orders/2/seg", data)
		rd, err := segmentstore.OpenReader(ctx, objstore.Object{Store: s, Key: "data/orders/2/seg"}, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := rd.Read(ctx, 1700, 1<<30)
		if err != nil || !reflect.DeepEqual(got, recs[1200:]) {
			t.Fatalf("read from 1700: %d records, %v", len(got), err)
		}
	})
}
