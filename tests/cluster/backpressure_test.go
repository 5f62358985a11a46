package cluster_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// With the object store frozen, an agent admits records up to --max-pending-bytes and
// refuses the rest with ResourceExhausted at once: its memory stays put however hard
// producers push, and everything it admitted is acked once the store is back.
func TestBackpressureBoundsMemory(t *testing.T) {
	const (
		budget   = 1 << 20
		perReq   = 64
		reqBytes = perReq << 10
	)
	ctx := context.Background()
	dir := t.TempDir()
	store, err := harness.StartMinIO(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-store.Process.Pid(), syscall.SIGCONT)
		if err := store.Stop(); err != nil {
			t.Error(err)
		}
	})
	if _, err := objstore.OpenS3(ctx, objstore.S3Options{Bucket: "backpressure", Endpoint: store.Endpoint, AccessKey: store.AccessKey, SecretKey: store.SecretKey, CreateBucket: true}); err != nil {
		t.Fatal(err)
	}
	a, err := harness.StartAgent(ctx, dir, harness.AgentConfig{
		Node: "bp-1", Etcd: etcd.Endpoint, EtcdRoot: fmt.Sprintf("/backpressure-test-%d", time.Now().UnixNano()), // runs share one etcd (-count)
		StoreURL: "s3://backpressure?endpoint=" + store.Endpoint,
		Env: []string{"AWS_ACCESS_KEY_ID=" + store.AccessKey, "AWS_SECRET_ACCESS_KEY=" + store.SecretKey, "AWS_REGION=us-east-1",
			"STREAMHOUSE_MAX_PENDING_BYTES=" + strconv.Itoa(budget)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log tail:\n%s", a.Process.LogTail(3000))
		}
		if err := a.Stop(); err != nil {
			t.Error(err)
		}
	})
	c, _ := dial(t, a.GRPCAddr)
	if _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "bp", Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	req := func(i int) *pb.ProduceRequest {
		p := int32(i % 4)
		r := &pb.ProduceRequest{Topic: "bp", Partition: &p}
		for j := range perReq {
			r.Records = append(r.Records, &pb.Record{Value: fmt.Appendf(make([]byte, 0, 1024), "%d/%d %01010d", i, j, j)})
		}
		return r
	}
	harness.Eventually(t, 60*time.Second, func() error { _, err := c.Produce(ctx, req(0)); return err })

	if err := syscall.Kill(-store.Process.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var admitted, refused, other atomic.Int64
	var wg sync.WaitGroup
	push := func(from, n int) {
		for i := from; i < from+n; i++ {
			wg.Go(func() {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
				_, err := c.Produce(rctx, req(i))
				switch status.Code(err) {
				case codes.OK:
					admitted.Add(1)
				case codes.ResourceExhausted:
					if refused.Add(1) == 1 { // which budget, and how full: for a failure's log
						t.Logf("first refusal (request %d): %v", i, err)
					}
				default:
					other.Add(1)
					t.Logf("request %d: %v", i, err)
				}
			})
		}
	}
	push(1, 100) // 6.4 MiB against a 1 MiB budget
	harness.Eventually(t, 30*time.Second, func() error {
		if refused.Load() < 70 {
			return fmt.Errorf("%d requests refused so far", refused.Load())
		}
		return nil
	})
	// Two more waves of 19 MiB each, all refused. Receiving a wave takes memory (gRPC
	// holds the requests it decodes) until the next garbage collection, but a refused
	// request must leave nothing behind: after a collection, the second wave leaves the
	// agent's live heap where the first left it.
	wave := func(from, refusedAfter int) float64 {
		push(from, 300)
		harness.Eventually(t, 30*time.Second, func() error {
			if refused.Load() < int64(refusedAfter) {
				return fmt.Errorf("%d requests refused so far", refused.Load())
			}
			return nil
		})
		return liveHeapMiB(t, a.AdminAddr)
	}
	first := wave(101, 370)
	second := wave(401, 670)
	if second-first > 4 {
		t.Fatalf("the agent's live heap grew from %.1f to %.1f MiB refusing a second 19 MiB wave", first, second)
	}
	if err := syscall.Kill(-store.Process.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	n := admitted.Load()
	t.Logf("store frozen: %d requests of 64 KiB admitted (budget 1 MiB), %d refused with ResourceExhausted, %d other; live heap %.1f MiB after the first refused wave, %.1f after the second",
		n, refused.Load(), other.Load(), first, second)
	if other.Load() != 0 || n == 0 || n*reqBytes > 2*budget || n+refused.Load() != 700 {
		t.Fatalf("admitted %d, refused %d, other %d: want every request admitted within about the budget or refused", n, refused.Load(), other.Load())
	}
	d, err := c.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "bp"})
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, p := range d.Partitions {
		total += p.HighWaterMark
	}
	if want := (n + 1) * perReq; total != want {
		t.Fatalf("partitions hold %d records; %d were acked", total, want)
	}
}

// liveHeapMiB collects the agent's garbage (the heap profile endpoint runs a collection
// first, with gc=1) and returns the heap still in use, from its /metrics.
func liveHeapMiB(t *testing.T, admin string) float64 {
	t.Helper()
	for range 2 { // the second collection also frees what sync.Pools kept from the first
		if code, body := httpGet(t, "http://"+admin+"/debug/pprof/heap?gc=1"); code != 200 {
			t.Fatalf("heap profile: %d %s", code, body)
		}
	}
	_, body := httpGet(t, "http://"+admin+"/metrics")
	return metricSum(body, "go_memstats_heap_alloc_bytes ") / (1 << 20)
}
