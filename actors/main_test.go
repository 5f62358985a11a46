package actors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// One real etcd and one real MinIO for the package; each test works under its own etcd
// root and its own bucket.
var (
	testEtcd  *harness.Etcd
	testMinIO *harness.MinIO
)

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, harness.Services{Etcd: &testEtcd, MinIO: &testMinIO}))
}

var seq atomic.Int64

// fixture is a coordination client under its own root and a store in its own bucket.
type fixture struct {
	c     *coordination.Client
	store objstore.Store
}

// newFixture returns a fixture whose etcd client dials with opts (interceptors, in tests
// that hold etcd calls back).
func newFixture(t *testing.T, opts ...grpc.DialOption) *fixture {
	t.Helper()
	n := seq.Add(1)
	e, err := clientv3.New(clientv3.Config{Endpoints: []string{testEtcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	c, err := coordination.New(e, coordination.Options{Root: fmt.Sprintf("/actors-test/%d", n)})
	if err != nil {
		t.Fatal(err)
	}
	store, err := objstore.OpenS3(context.Background(), objstore.S3Options{
		Bucket: fmt.Sprintf("actors-%d-%d", os.Getpid(), n), Endpoint: testMinIO.Endpoint,
		AccessKey: testMinIO.AccessKey, SecretKey: testMinIO.SecretKey, CreateBucket: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{c: c, store: store}
}

func (f *fixture) lease(t *testing.T, topic string, partitions int32, partition int32) *coordination.Lease {
	t.Helper()
	ctx := context.Background()
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: topic, Partitions: partitions}); err != nil && !errors.Is(err, coordination.ErrTopicExists) {
		t.Fatal(err)
	}
	s, err := f.c.NewSession(ctx, coordination.NodeInfo{Node: fmt.Sprintf("node-%d", seq.Add(1))}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	l, err := s.Acquire(ctx, topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// faultyStore wraps the real store to fail chosen Puts or hold them, the way a flaky or
// slow S3 would.
type faultyStore struct {
	objstore.Store
	mu       sync.Mutex
	puts     int
	failPuts map[int]bool // 1-based indexes of Puts that fail
	hold     chan struct{}
}

// waitPuts waits until n Puts have reached the store (held ones included).
func (f *faultyStore) waitPuts(t *testing.T, n int) {
	t.Helper()
	harness.Eventually(t, 10*time.Second, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.puts < n {
			return fmt.Errorf("%d Puts so far, want %d", f.puts, n)
		}
		return nil
	})
}

func (f *faultyStore) Put(ctx context.Context, key string, parts ...[]byte) error {
	f.mu.Lock()
	f.puts++
	fail, hold := f.failPuts[f.puts], f.hold
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail {
		return errors.New("injected store failure")
	}
	return f.Store.Put(ctx, key, parts...)
}
