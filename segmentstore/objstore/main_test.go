package objstore_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// minio is one real MinIO shared by the package's tests; each test gets its own bucket.
var minio *harness.MinIO

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, harness.Services{MinIO: &minio}))
}

var buckets atomic.Int64

// s3Options returns options for a fresh bucket on the shared MinIO.
func s3Options(t testing.TB) objstore.S3Options {
	return objstore.S3Options{
		Bucket:   fmt.Sprintf("test-%d-%d", os.Getpid(), buckets.Add(1)),
		Endpoint: minio.Endpoint, AccessKey: minio.AccessKey, SecretKey: minio.SecretKey,
		CreateBucket: true,
	}
}

func openS3(t testing.TB, o objstore.S3Options) *objstore.S3Store {
	t.Helper()
	s, err := objstore.OpenS3(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
