package actors

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore"
)

// TestHistoryReadStopsWhereAPieceWasCut: a read from the store that fills its bytes within
// a segment ends there, even when the next segment's records are small enough to fit in
// what is left. Before, they were added after the gap: a consumer reading from the start
// with 1 MiB fetches of a segment of 200 KB records followed by one of 100 B records was
// answered offsets 0-4 and then 10 on, and never saw 5-9.
func TestHistoryReadStopsWhereAPieceWasCut(t *testing.T) {
	f := newFixture(t)
	w := newWriter(writerConfig{Lease: f.lease(t, "t", 1, 0), Store: f.store, Linger: time.Hour}, 0)
	sized := func(n, size int) []segmentstore.Record {
		recs := make([]segmentstore.Record, n)
		for i := range recs {
			recs[i].Value = bytes.Repeat([]byte{byte('a' + i%26)}, size)
		}
		return recs
	}
	results := make(chan produceResult, 2)
	w.Append(sized(10, 200_000), nil, 0, func(r produceResult) { results <- r })
	w.seal(true) // a segment of its own
	w.Append(sized(500, 100), nil, 0, func(r produceResult) { results <- r })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r := <-results; r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	h := &history{c: f.c, store: f.store, cache: segmentstore.NewCache(64 << 20)}
	p := coordination.Partition{Topic: "t", Partition: 0}
	idx := &segmentIndex{}
	next, fetches := int64(0), 0
	for next < 510 {
		recs, err := h.read(ctx, p, idx, next, 1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		fetches++
		if len(recs) == 0 {
			t.Fatalf("fetch %d from %d: no records", fetches, next)
		}
		for _, r := range recs {
			if r.Offset != next {
				t.Fatalf("fetch %d answered offset %d after %d: offsets %d-%d skipped", fetches, r.Offset, next-1, next, r.Offset-1)
			}
			next++
		}
	}
}

// TestCorruptSegmentIsDataLoss: a fetch of records whose stored segment fails its checks
// is answered DATA_LOSS at once: reading it again cannot help. Before, it was UNAVAILABLE,
// which the client retried for its whole budget and a subscription forever.
func TestCorruptSegmentIsDataLoss(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.c.CreateTopic(ctx, coordination.TopicSpec{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	// No recent records kept: every fetch reads the store.
	node := startNodesWith(t, f, 1, func(c *NodeConfig) { c.RecentBytes = 1 })[0]
	p := coordination.Partition{Topic: "t", Partition: 0}
	if resp, err := node.Client().Produce(ctx, p, []*partitionpb.Record{{Value: bytes.Repeat([]byte("x"), 1000)}}); err != nil || resp.Code != partitionpb.Code_CODE_OK {
		t.Fatalf("produce: %v %v", resp, err)
	}
	segs, _, err := f.c.Segments(ctx, "t", 0, 0, 0)
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	obj, err := f.store.Get(ctx, segs[0].Object)
	if err != nil {
		t.Fatal(err)
	}
	obj[segs[0].Offset+segs[0].ZBytes/2] ^= 0xff // a byte of the segment's block flipped
	if err := f.store.Put(ctx, segs[0].Object, obj); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := node.Client().Fetch(ctx, &partitionpb.FetchRequest{Topic: "t", Offset: 0, MaxBytes: 1 << 20})
	if err != nil || resp.Code != partitionpb.Code_CODE_DATA_LOSS || len(resp.Records) != 0 {
		t.Fatalf("fetch of a corrupt segment: %v, %v; want DATA_LOSS", resp, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("DATA_LOSS after %s: retried", took)
	}
}
