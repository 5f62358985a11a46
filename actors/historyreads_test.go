package actors

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// gatedReads holds every ranged GET of the store until open is closed, counting those
// started, the way a slow S3 would keep them.
type gatedReads struct {
	objstore.Store
	open chan struct{}

	mu      sync.Mutex
	started int
}

func (g *gatedReads) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	g.mu.Lock()
	g.started++
	g.mu.Unlock()
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Store.GetRange(ctx, key, off, n)
}

func (g *gatedReads) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.started
}

// A fetch served from the store goes on reading once its caller has given up: the
// partition's agent bounds such reads itself (HistoryReadBytes), so that callers that
// time out and ask again cannot pile reads, each up to its max bytes, onto a slow store.
// Before, each fetch a caller abandoned left a read running.
func TestReadsFromTheStoreAreBoundedWhenTheirCallersGiveUp(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	store := &gatedReads{Store: f.store, open: make(chan struct{})}
	f.store = store
	nodes := startNodesWith(t, f, 1, func(cfg *NodeConfig) {
		cfg.HistoryReadBytes = 1 << 20
		cfg.RecentBytes = 1 // nothing kept for tail reads: every fetch reads the store
	})
	p := coordination.Partition{Topic: "t"}
	const segments = 4
	for i := range segments {
		mustProduce(t, nodes[0], p, &partitionpb.Record{Value: fmt.Appendf(nil, "record %d", i)})
	}

	waitsBefore := testutil.ToFloat64(metricHistoryReadWaits)
	// One fetch per segment, each of the budget's whole size, and each given up while
	// its read waits for the store.
	var wg sync.WaitGroup
	for i := range segments {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			_, _ = nodes[0].Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "t", Offset: int64(i), MaxBytes: 1 << 20})
		}()
	}
	wg.Wait()
	// Every read is at the store or waiting its turn, though its caller is gone.
	harness.Eventually(t, 10*time.Second, func() error {
		if n := store.count() + int(testutil.ToFloat64(metricHistoryReadWaits)-waitsBefore); n < segments {
			return fmt.Errorf("%d of %d reads at the store or waiting", n, segments)
		}
		return nil
	})
	if n := store.count(); n != 1 {
		t.Fatalf("%d reads of 1 MiB at the store at once with a budget of 1 MiB, want 1", n)
	}

	// Once the store answers, the reads held back run in turn and the budget comes back:
	// a fetch now is served.
	close(store.open)
	harness.Eventually(t, 10*time.Second, func() error {
		resp, err := nodes[0].Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "t", Offset: 2, MaxBytes: 1 << 20})
		if err != nil || resp.Code != partitionpb.Code_CODE_OK || len(resp.Records) == 0 || string(resp.Records[0].Value) != "record 2" {
			return fmt.Errorf("fetch from 2 after the store answered: %v %v", resp, err)
		}
		return nil
	})
}
