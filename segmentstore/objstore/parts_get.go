package objstore

import (
	"context"
	"fmt"
)

// PartsGetter is implemented by stores that read adjacent ranges of an object with one
// request, each into a buffer of its own (S3: one ranged GET; MinIO reads whole 1 MiB
// blocks, so one GET of several segments costs it less per byte than one GET each,
// docs/BENCHMARKS.md item 23).
type PartsGetter interface {
	// GetParts returns the object's bytes from off on cut into len(sizes) buffers, the
	// i-th sizes[i] long; it fails with ErrInvalidRange when the object ends first.
	GetParts(ctx context.Context, key string, off int64, sizes []int64) ([][]byte, error)
}

// GetParts reads the adjacent ranges of key from off on, sizes[i] bytes each, with one
// request where s is a PartsGetter and one GetRange each otherwise.
func GetParts(ctx context.Context, s Store, key string, off int64, sizes []int64) ([][]byte, error) {
	if err := checkParts(off, sizes); err != nil {
		return nil, err
	}
	if g, ok := s.(PartsGetter); ok {
		return g.GetParts(ctx, key, off, sizes)
	}
	out := make([][]byte, len(sizes))
	for i, n := range sizes {
		b, err := (Object{Store: s, Key: key, Offset: off}).ReadRange(ctx, 0, n)
		if err != nil {
			return nil, err
		}
		out[i] = b
		off += n
	}
	return out, nil
}

// checkParts validates GetParts' arguments: a valid offset and at least one part, each of
// positive size.
func checkParts(off int64, sizes []int64) error {
	if len(sizes) == 0 {
		return fmt.Errorf("%w: no parts at %d", ErrInvalidRange, off)
	}
	for _, n := range sizes {
		if err := checkRange(off, n); err != nil {
			return err
		}
	}
	return nil
}

func sum(sizes []int64) int64 {
	var t int64
	for _, n := range sizes {
		t += n
	}
	return t
}
