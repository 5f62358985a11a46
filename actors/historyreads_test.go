package actors

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// gatedReads holds every ranged GET of the store while it is shut, counting those
// started, the way a slow S3 would keep them.
type gatedReads struct {
	objstore.Store
	gate atomic.Pointer[chan struct{}] // nil: open

	mu      sync.Mutex
	started int
}

func (g *gatedReads) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if gate := g.gate.Load(); gate != nil {
		g.mu.Lock()
		g.started++
		g.mu.Unlock()
		select {
		case <-*gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Store.GetRange(ctx, key, off, n)
}

func (g *gatedReads) shut() {
	gate := make(chan struct{})
	g.gate.Store(&gate)
}

func (g *gatedReads) open() { close(*g.gate.Swap(nil)) }

// held is how many GETs the shut gate has held.
func (g *gatedReads) held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.started
}

// A fetch served from the store goes on reading once its caller has given up: the
// partition's agent admits such reads within a budget of its own (HistoryReadBytes), so that
// callers that time out and ask again cannot pile reads onto a slow store. A fetch the
// block cache answers holds none of it, and is served while the store is slow. Before,
// each fetch a caller abandoned left a read running, outside every budget.
func TestReadsFromTheStoreAreBoundedWhenTheirCallersGiveUp(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	store := &gatedReads{Store: f.store}
	f.store = store
	nodes := startNodesWith(t, f, 1, func(cfg *NodeConfig) {
		cfg.HistoryReadBytes = 1 // room for one read's GETs at a time
		cfg.RecentBytes = 1      // nothing kept for tail reads: every fetch reads the store or the cache
	})
	p := coordination.Partition{Topic: "t"}
	const segments = 5
	for i := range segments {
		mustProduce(t, nodes[0], p, &partitionpb.Record{Value: fmt.Appendf(nil, "record %d", i)})
	}
	fetch := func(ctx context.Context, offset int64, maxBytes int32) (*partitionpb.FetchResponse, error) {
		resp, err := nodes[0].Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "t", Offset: offset, MaxBytes: maxBytes})
		if err == nil && (resp.Code != partitionpb.Code_CODE_OK || len(resp.Records) == 0 || string(resp.Records[0].Value) != fmt.Sprintf("record %d", offset)) {
			err = fmt.Errorf("fetch from %d: %v", offset, resp)
		}
		return resp, err
	}
	// Segments 1 and 4 are read once, into the block cache (a fetch of one byte ends
	// with its first record).
	for _, offset := range []int64{1, segments - 1} {
		if _, err := fetch(ctx, offset, 1); err != nil {
			t.Fatal(err)
		}
	}

	store.shut()
	waitsBefore := testutil.ToFloat64(metricHistoryReadWaits)
	// One fetch for each of the other segments, each given up while its read waits for
	// the store.
	uncached := []int64{0, 2, 3}
	var wg sync.WaitGroup
	for _, offset := range uncached {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			_, _ = fetch(ctx, offset, 1<<20)
		}()
	}
	wg.Wait()
	// Every read is at the store or waiting its turn, though its caller is gone.
	harness.Eventually(t, 10*time.Second, func() error {
		if n := store.held() + int(testutil.ToFloat64(metricHistoryReadWaits)-waitsBefore); n < len(uncached) {
			return fmt.Errorf("%d of %d reads at the store or waiting", n, len(uncached))
		}
		return nil
	})
	if n := store.held(); n != 1 {
		t.Fatalf("%d reads at the store at once with room for one, want 1", n)
	}
	// While the budget is spent, a fetch the cache answers is served at once, and one
	// that has records from the cache answers with them rather than wait for room to
	// read on.
	quick, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := fetch(quick, segments-1, 1<<20); err != nil {
		t.Fatalf("a fetch the cache answers, with the store slow and the budget spent: %v", err)
	}
	resp, err := fetch(quick, 1, 1<<20)
	if err != nil || len(resp.Records) != 1 {
		t.Fatalf("a fetch of a cached segment and an uncached one, with the budget spent: %v %v", resp, err)
	}

	// Once the store answers, the reads held back run in turn and the budget comes back:
	// a fetch now is served.
	store.open()
	harness.Eventually(t, 20*time.Second, func() error {
		_, err := fetch(ctx, 2, 1<<20)
		return err
	})
	harness.Eventually(t, 10*time.Second, func() error {
		if held := nodes[0].hist.reads.Held(); held != 0 {
			return fmt.Errorf("%d bytes still held by reads that ended", held)
		}
		return nil
	})
}
