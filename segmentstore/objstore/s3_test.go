package objstore_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

func TestS3Store(t *testing.T) {
	testConformance(t, openS3(t, s3Options(t)))
}

func TestS3StoreWithPrefix(t *testing.T) {
	ctx := context.Background()
	o := s3Options(t)
	o.Prefix = "cluster-a"
	a := openS3(t, o)
	testConformance(t, a)

	// A second cluster in the same bucket sees none of the first one's objects.
	o.Prefix, o.CreateBucket = "cluster-b", false
	b := openS3(t, o)
	if infos, err := b.List(ctx, ""); err != nil || len(infos) != 0 {
		t.Fatalf("cluster-b lists %d objects of cluster-a, %v", len(infos), err)
	}
	if _, err := b.Get(ctx, "a/one"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("cluster-b reads cluster-a's object: %v", err)
	}
}

func TestS3StoreFromEnvironment(t *testing.T) {
	ctx := context.Background()
	bucket := s3Options(t).Bucket
	// The variables users of the original StreamHouse set.
	t.Setenv("AWS_ENDPOINT_URL", minio.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", minio.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", minio.SecretKey)
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	// Signed payloads too: the default sends them unsigned (the conformance tests).
	s, err := objstore.Open(ctx, "s3://"+bucket+"/env?create_bucket=true&signed_payload=true")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "k", []byte("from env")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "k"); err != nil || string(got) != "from env" {
		t.Fatalf("get: %q, %v", got, err)
	}
	if !strings.Contains(s.String(), "s3://"+bucket+"/env") || strings.Contains(s.String(), minio.SecretKey) {
		t.Fatalf("store name %q", s.String())
	}
}

func TestS3WrongCredentials(t *testing.T) {
	ctx := context.Background()
	o := s3Options(t)
	good := openS3(t, o)
	if err := good.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	o.CreateBucket, o.SecretKey = false, "wrong-secret"
	proxy, requests := faultyProxy(t, 0, 0)
	o.Endpoint = proxy
	bad := openS3(t, o)
	for name, err := range map[string]error{
		"check": bad.Check(ctx),
		"put":   bad.Put(ctx, "k2", []byte("v")),
		"get":   second(bad.Get(ctx, "k")),
		"head":  second(bad.Head(ctx, "k")),
		"list":  second(bad.List(ctx, "")),
	} {
		if !errors.Is(err, objstore.ErrAuth) || errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("%s with a wrong secret: %v, want ErrAuth", name, err)
		}
		if err != nil && !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY") {
			t.Errorf("%s: error %q does not say what to fix", name, err)
		}
	}
	// Rejected credentials are not retried: one request per operation.
	if n := requests.Load(); n != 5 {
		t.Errorf("%d requests for 5 operations with bad credentials; auth errors must not be retried", n)
	}
	if ok, err := objstore.Exists(ctx, good, "k2"); ok || err != nil {
		t.Errorf("a put with a wrong secret wrote an object: %v, %v", ok, err)
	}
}

func TestS3MissingBucket(t *testing.T) {
	ctx := context.Background()
	o := s3Options(t)
	o.CreateBucket = false
	s := openS3(t, o)
	if err := s.Check(ctx); !errors.Is(err, objstore.ErrNoBucket) {
		t.Fatalf("check: %v, want ErrNoBucket", err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, objstore.ErrNoBucket) {
		t.Fatalf("get: %v, want ErrNoBucket", err)
	}
	if err := s.Put(ctx, "k", []byte("v")); !errors.Is(err, objstore.ErrNoBucket) {
		t.Fatalf("put: %v, want ErrNoBucket", err)
	}
}

func TestS3RetriesTransientErrors(t *testing.T) {
	ctx := context.Background()
	o := s3Options(t)
	o.MaxBackoff = 50 * time.Millisecond // the schedule, not its length, is under test
	s := openS3(t, o)                    // creates the bucket directly
	// Three 503s, then the real MinIO: the put succeeds after four requests.
	proxy, requests := faultyProxy(t, 3, http.StatusServiceUnavailable)
	o.Endpoint, o.CreateBucket = proxy, false
	flaky := openS3(t, o)
	if err := flaky.Put(ctx, "k", []byte("survives")); err != nil {
		t.Fatalf("put through 3 transient errors: %v", err)
	}
	if n := requests.Load(); n != 4 {
		t.Fatalf("%d requests, want 4 (3 failures + 1 success)", n)
	}
	if got, err := s.Get(ctx, "k"); err != nil || string(got) != "survives" {
		t.Fatalf("get: %q, %v", got, err)
	}

	// Past MaxAttempts the error comes back, after exactly MaxAttempts requests.
	proxy, requests = faultyProxy(t, 100, http.StatusInternalServerError)
	o.Endpoint, o.MaxAttempts = proxy, 3
	broken := openS3(t, o)
	if _, err := broken.Get(ctx, "k"); err == nil {
		t.Fatal("get through a store that always fails succeeded")
	}
	if n := requests.Load(); n != 3 {
		t.Fatalf("%d requests, want MaxAttempts = 3", n)
	}

	// A missing object is an answer, not a failure: one request.
	proxy, requests = faultyProxy(t, 0, 0)
	o.Endpoint = proxy
	if _, err := openS3(t, o).Get(ctx, "missing"); !errors.Is(err, objstore.ErrNotFound) || requests.Load() != 1 {
		t.Fatalf("get missing: %v after %d requests; want ErrNotFound after 1", err, requests.Load())
	}
}

func TestS3DeadEndpoint(t *testing.T) {
	o := s3Options(t)
	o.CreateBucket, o.MaxAttempts = false, 2
	o.Endpoint = "http://127.0.0.1:1" // nothing listens on port 1
	s := openS3(t, o)
	err := s.Put(context.Background(), "k", []byte("v"))
	if err == nil || errors.Is(err, objstore.ErrNotFound) || errors.Is(err, objstore.ErrAuth) {
		t.Fatalf("put to a dead endpoint: %v, want a connection error", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("error %q does not name the endpoint", err)
	}
}

// faultyProxy forwards to MinIO after failing the first `failures` requests with status.
// It counts every request it receives.
func faultyProxy(t *testing.T, failures int64, status int) (string, *atomic.Int64) {
	target, err := url.Parse(minio.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= failures {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>`))
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

func second[T any](_ T, err error) error { return err }
