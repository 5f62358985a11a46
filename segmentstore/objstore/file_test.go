package objstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

func TestFileStore(t *testing.T) {
	s, err := objstore.Open(context.Background(), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	testConformance(t, s)
}

func TestFileStoreLeavesNoTempFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := objstore.OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "p/x", []byte("data")); err != nil {
		t.Fatal(err)
	}
	// A writer that crashed mid-put leaves a temporary file: it is not an object.
	if err := os.WriteFile(filepath.Join(dir, "p", ".tmp-123"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "p"))
	if err != nil || len(entries) != 2 {
		t.Fatalf("dir holds %d entries, %v", len(entries), err)
	}
	infos, err := s.List(ctx, "p/")
	if err != nil || len(infos) != 1 || infos[0].Key != "p/x" {
		t.Fatalf("list: %+v, %v", infos, err)
	}
}

func TestFileStoreURLs(t *testing.T) {
	ctx := context.Background()
	t.Chdir(t.TempDir())
	s, err := objstore.Open(ctx, "file://./data")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("data", "k")); err != nil {
		t.Fatalf("file://./data did not write under ./data: %v", err)
	}
	for _, bad := range []string{"file://", "ftp://x/y", "data", "s3://", "s3://b?nope=1", "s3://b?max_attempts=0", "s3://user:pw@b", "s3://b?path_style=maybe", "s3://b?signed_payload=maybe", "s3://b?endpoint=localhost:9000", "%zz"} {
		if _, err := objstore.Open(ctx, bad); !errors.Is(err, objstore.ErrInvalidURL) {
			t.Errorf("open %q: %v, want ErrInvalidURL", bad, err)
		}
	}
}

func TestFileStoreCheckMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := objstore.OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); !errors.Is(err, objstore.ErrNoBucket) {
		t.Fatalf("check of a removed directory: %v, want ErrNoBucket", err)
	}
}
