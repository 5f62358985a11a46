package cluster_test

import (
	"context"
	"errors"
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
// producers push, and everything it admitted is acked once the store is back. The store
// stays frozen until admitted requests are re-sent to their partition (after the
// gateway's 5 s attempt timeout) while their first attempt waits: each must still be written
// once and answered with its outcome (a re-send refused by the full budget was once
// answered ResourceExhausted while its first attempt committed). Every request ends
// acked and in the log once, refused and absent, or (past the gateway's retry budget)
// unavailable with its outcome unknown, in the log at most once.
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
	frozen := time.Now()
	var admitted, refused, unknown, other atomic.Int64
	var outcomes sync.Map // request → codes.Code
	var wg sync.WaitGroup
	push := func(from, n int) {
		for i := from; i < from+n; i++ {
			wg.Go(func() {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
				_, err := c.Produce(rctx, req(i))
				code := status.Code(err)
				outcomes.Store(i, code)
				switch code {
				case codes.OK:
					admitted.Add(1)
				case codes.ResourceExhausted:
					if refused.Add(1) == 1 { // which budget, and how full: for a failure's log
						t.Logf("first refusal (request %d): %v", i, err)
					}
				case codes.Unavailable:
					if unknown.Add(1) == 1 {
						t.Logf("first unavailable (request %d): %v", i, err)
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
	// Frozen past the gateway's 5 s attempt timeout: admitted requests are re-sent.
	harness.Eventually(t, 30*time.Second, func() error {
		if _, body := httpGet(t, "http://"+a.AdminAddr+"/metrics"); harness.MetricSum(body, "streamhouse_produce_resent_total") < 1 {
			return errors.New("no admitted request re-sent yet")
		}
		return nil
	})
	if err := syscall.Kill(-store.Process.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	n := admitted.Load()
	t.Logf("store frozen %s: %d requests of 64 KiB admitted (budget 1 MiB), %d refused with ResourceExhausted, %d unavailable, %d other; live heap %.1f MiB after the first refused wave, %.1f after the second",
		time.Since(frozen).Round(100*time.Millisecond), n, refused.Load(), unknown.Load(), other.Load(), first, second)
	if other.Load() != 0 || n+unknown.Load() == 0 || (n+unknown.Load())*reqBytes > 2*budget || n+refused.Load()+unknown.Load() != 700 {
		t.Fatalf("admitted %d, refused %d, unavailable %d, other %d: want every request admitted within about the budget or refused",
			n, refused.Load(), unknown.Load(), other.Load())
	}
	// Read every partition back: how often each request's records are in the log.
	written := map[int]int{} // request → records of it in the log
	seen := map[string]bool{}
	for p := range int32(4) {
		for offset := int64(0); ; {
			resp, err := c.Fetch(ctx, &pb.FetchRequest{Topic: "bp", Partition: p, Offset: offset, MaxBytes: 4 << 20})
			if err != nil {
				t.Fatalf("fetch bp/%d at %d: %v", p, offset, err)
			}
			for _, r := range resp.Records {
				var i, j int
				if _, err := fmt.Sscanf(string(r.Value), "%d/%d ", &i, &j); err != nil {
					t.Fatalf("bp/%d offset %d holds %.20q: %v", p, r.Offset, r.Value, err)
				}
				key := fmt.Sprintf("%d/%d", i, j)
				if seen[key] && i != 0 { // request 0 is retried until acked: its outcome may have been unknown
					t.Fatalf("record %s of request %d is in the log twice (bp/%d offset %d)", key, i, p, r.Offset)
				}
				seen[key] = true
				written[i]++
				offset = r.Offset + 1
			}
			if offset >= resp.HighWaterMark {
				break
			}
			if len(resp.Records) == 0 {
				t.Fatalf("fetch bp/%d at %d below its high-water mark %d returned nothing", p, offset, resp.HighWaterMark)
			}
		}
	}
	for i := 1; i <= 700; i++ {
		code, _ := outcomes.Load(i)
		switch got := written[i]; {
		case code == codes.OK && got != perReq:
			t.Errorf("request %d was acked; %d of its %d records are in the log", i, got, perReq)
		case code == codes.ResourceExhausted && got != 0:
			t.Errorf("request %d was refused; %d of its records are in the log", i, got)
		case code == codes.Unavailable && got != 0 && got != perReq:
			t.Errorf("request %d was unavailable; %d of its %d records are in the log", i, got, perReq)
		}
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
	return harness.MetricSum(body, "go_memstats_heap_alloc_bytes ") / (1 << 20)
}
