package coordination_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// etcd is one real etcd shared by the package's tests; each test works under its own root
// prefix, which is how several clusters share an etcd in production too.
var etcd *harness.Etcd

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, harness.Services{Etcd: &etcd}))
}

func etcdClient(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var roots atomic.Int64

var nonKeyChars = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// newClient returns a client under a root prefix of its own on the shared etcd.
func newClient(t testing.TB) *coordination.Client {
	t.Helper()
	return clientOn(t, etcdClient(t, etcd.Endpoint), fmt.Sprintf("/test/%s-%d", nonKeyChars.ReplaceAllString(t.Name(), "-"), roots.Add(1)))
}

func clientOn(t testing.TB, e *clientv3.Client, root string) *coordination.Client {
	t.Helper()
	c, err := coordination.New(e, coordination.Options{Root: root, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mustAcquire acquires partition's lease in s, failing the test if it cannot.
func mustAcquire(t testing.TB, s *coordination.Session, topic string, partition int32) *coordination.Lease {
	t.Helper()
	l, err := s.Acquire(ctxT(t), topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustTopic(t testing.TB, c *coordination.Client, name string, partitions int32) coordination.TopicSpec {
	t.Helper()
	spec, err := c.CreateTopic(ctxT(t), coordination.TopicSpec{Name: name, Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func mustSession(t testing.TB, c *coordination.Client, node string, ttl time.Duration) *coordination.Session {
	t.Helper()
	s, err := c.NewSession(ctxT(t), coordination.NodeInfo{Node: node, Addr: "127.0.0.1:1", Zone: "zone-a"}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// dump returns every key and value under the client's root: what an operator's
// `etcdctl get --prefix` would print. Tests use it to prove a refused request wrote nothing.
func dump(t testing.TB, c *coordination.Client) map[string]string {
	t.Helper()
	resp, err := c.Etcd().Get(ctxT(t), c.Keys().Root(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

// segment returns the meta of a segment [base, base+n).
func segment(base, n, epoch int64) coordination.SegmentMeta {
	return coordination.SegmentMeta{
		Object: objectKey("t", 0, base, epoch), Base: base, Last: base + n - 1,
		Records: n, Bytes: n * 100, ZBytes: n * 40, Epoch: epoch,
	}
}

// objectKey names a test segment's object uniquely per partition, base and epoch.
func objectKey(topic string, partition int32, base, epoch int64) string {
	return fmt.Sprintf("data/%s/%d/%d-%d.seg", topic, partition, base, epoch)
}

// writeIndex writes a partition's index directly: segments of the given record counts
// from offset start, and the high-water mark after them, as an owner's commits, merges and
// retention would leave them, in transactions of 128 puts (far faster than commits). It
// returns the entries written.
func writeIndex(t testing.TB, c *coordination.Client, topic string, partition int32, start int64, sizes []int64) []coordination.SegmentMeta {
	t.Helper()
	e, keys := c.Etcd(), c.Keys()
	var ops []clientv3.Op
	flush := func() {
		if _, err := e.Txn(ctxT(t)).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
		ops = ops[:0]
	}
	metas := make([]coordination.SegmentMeta, 0, len(sizes))
	base := start
	for _, n := range sizes {
		m := segment(base, n, 1)
		m.Object, m.WrittenMs = objectKey(topic, partition, m.Base, 1), time.Now().UnixMilli()
		v, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		metas = append(metas, m)
		// Transactions of 16 puts: some tests' etcd takes no more (--max-txn-ops).
		if ops = append(ops, clientv3.OpPut(keys.Segment(topic, partition, m.Base), string(v))); len(ops) == 16 {
			flush()
		}
		base += n
	}
	ops = append(ops, clientv3.OpPut(keys.HWM(topic, partition), strconv.FormatInt(base, 10)))
	flush()
	return metas
}
