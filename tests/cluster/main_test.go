// Package cluster_test runs StreamHouse agents as separate processes against a real etcd
// and a real MinIO, and checks what users rely on: every partition has one owner, acked
// records are never lost or written twice, and partitions move when agents come and go.
package cluster_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/streamhouse/streamhouse/actors"
	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/tests/harness"
)

var (
	etcd  *harness.Etcd
	minio *harness.MinIO
)

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, harness.Services{Etcd: &etcd, MinIO: &minio, Streamhouse: true}))
}

var clusters atomic.Int64

// testCluster is a set of agent processes sharing one etcd root and one bucket, and an
// in-process client member that routes requests to them.
type testCluster struct {
	t      *testing.T
	root   string
	bucket string
	coord  *coordination.Client
	mirror *coordination.Mirror
	client *actors.Node
	agents []*harness.Agent
	dir    string
	// agentEnv and agentArgs are added to every agent addAgent starts.
	agentEnv, agentArgs []string
}

func newCluster(t *testing.T, agents int, ttl time.Duration) *testCluster {
	t.Helper()
	n := clusters.Add(1)
	tc := &testCluster{t: t, root: fmt.Sprintf("/cluster-test/%d", n), bucket: fmt.Sprintf("cluster-%d-%d", os.Getpid(), n), dir: t.TempDir()}
	ctx := context.Background()
	e, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	if tc.coord, err = coordination.New(e, coordination.Options{Root: tc.root}); err != nil {
		t.Fatal(err)
	}
	if _, err := objstore.OpenS3(ctx, objstore.S3Options{Bucket: tc.bucket, Endpoint: minio.Endpoint,
		AccessKey: minio.AccessKey, SecretKey: minio.SecretKey, CreateBucket: true}); err != nil {
		t.Fatal(err)
	}
	for i := range agents {
		tc.addAgent(fmt.Sprintf("agent-%d", i+1), fmt.Sprintf("zone-%c", 'a'+i%3), ttl)
	}
	tc.mirror = tc.coord.NewMirror()
	if err := tc.mirror.Load(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = tc.mirror.Watch(wctx) }()
	t.Cleanup(func() { cancel(); <-done })
	store, _ := objstore.Open(ctx, "file://"+t.TempDir()) // unused by a client-only member
	tc.client, err = actors.StartNode(ctx, tc.coord, store, tc.mirror, actors.NodeConfig{
		Info: coordination.NodeInfo{Node: "test-client"}, ClientOnly: true,
		Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = tc.client.Stop(ctx)
	})
	return tc
}

func (tc *testCluster) addAgent(node, zone string, ttl time.Duration) *harness.Agent {
	tc.t.Helper()
	return tc.addAgentVia(node, zone, ttl, etcd.Endpoint)
}

// addAgentVia adds an agent that reaches etcd at endpoint (a proxy the test may cut).
func (tc *testCluster) addAgentVia(node, zone string, ttl time.Duration, endpoint string) *harness.Agent {
	tc.t.Helper()
	return tc.addAgentWith(node, zone, ttl, func(cfg *harness.AgentConfig) { cfg.Etcd = endpoint })
}

// addAgentWith adds an agent whose config tune changes.
func (tc *testCluster) addAgentWith(node, zone string, ttl time.Duration, tune func(*harness.AgentConfig)) *harness.Agent {
	tc.t.Helper()
	cfg := harness.AgentConfig{
		Node: node, Zone: zone, Etcd: etcd.Endpoint, EtcdRoot: tc.root, SessionTTL: ttl,
		StoreURL: "s3://" + tc.bucket + "?endpoint=" + minio.Endpoint,
		Env:      append([]string{"AWS_ACCESS_KEY_ID=" + minio.AccessKey, "AWS_SECRET_ACCESS_KEY=" + minio.SecretKey, "AWS_REGION=us-east-1"}, tc.agentEnv...),
		Args:     slices.Clone(tc.agentArgs),
	}
	tune(&cfg)
	a, err := harness.StartAgent(context.Background(), tc.dir, cfg)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.agents = append(tc.agents, a)
	tc.t.Cleanup(func() {
		if tc.t.Failed() {
			tc.t.Logf("%s log tail:\n%s", a.Config.Node, a.Process.LogTail(3000))
		}
		_ = a.Signal(syscall.SIGCONT) // a paused agent cannot stop
		if err := a.Stop(); err != nil {
			tc.t.Error(err)
		}
	})
	return a
}

func (tc *testCluster) topic(name string, partitions int32) {
	tc.t.Helper()
	if _, err := tc.coord.CreateTopic(context.Background(), coordination.TopicSpec{Name: name, Partitions: partitions}); err != nil {
		tc.t.Fatal(err)
	}
}

// waitOwned waits until every partition of the topics has a lease held by the live agent
// that Placement names its owner, and returns the owners.
func (tc *testCluster) waitOwned(timeout time.Duration, topics map[string]int32) map[coordination.Partition]coordination.Owner {
	tc.t.Helper()
	owners := map[coordination.Partition]coordination.Owner{}
	byAddr := func() map[string]string {
		out := map[string]string{}
		for _, m := range tc.client.Members() {
			out[m.Address] = m.Node
		}
		return out
	}
	harness.Eventually(tc.t, timeout, func() error {
		nodes := byAddr()
		clear(owners)
		for topic, n := range topics {
			for i := range n {
				p := coordination.Partition{Topic: topic, Partition: i}
				o, ok := tc.mirror.Owner(p)
				if !ok {
					return fmt.Errorf("%s has no owner", p)
				}
				if want := nodes[tc.client.Owner(p)]; o.Node != want {
					return fmt.Errorf("%s is held by %s, its placement is %q", p, o.Node, want)
				}
				owners[p] = o
			}
		}
		return nil
	})
	return owners
}

// partitionOf is how these tests spread keys over partitions (FNV-1a).
func partitionOf(key string, partitions int32) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int32(h.Sum32() % uint32(partitions))
}

// readAll fetches a partition from offset 0 to its high-water mark through the cluster.
func (tc *testCluster) readAll(p coordination.Partition) []*partitionpb.Record {
	tc.t.Helper()
	var out []*partitionpb.Record
	for {
		resp, err := tc.client.Client().Fetch(context.Background(), &partitionpb.FetchRequest{
			Topic: p.Topic, Partition: p.Partition, Offset: int64(len(out)), MaxBytes: 4 << 20})
		if err != nil || resp.Code != partitionpb.Code_CODE_OK {
			tc.t.Fatalf("fetch %s from %d: %v %v", p, len(out), resp, err)
		}
		for _, r := range resp.Records {
			if r.Offset != int64(len(out)) {
				tc.t.Fatalf("%s: offset %d where %d was expected (gap or duplicate)", p, r.Offset, len(out))
			}
			out = append(out, r)
		}
		if int64(len(out)) >= resp.HighWaterMark {
			return out
		}
		if len(resp.Records) == 0 {
			tc.t.Fatalf("fetch %s from %d returned nothing below hwm %d", p, len(out), resp.HighWaterMark)
		}
	}
}
