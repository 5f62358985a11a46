package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pierrec/lz4/v4"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// floors are what a produce costs at the least: one object PUT, one etcd transaction,
// compressing the batch.
type floors struct {
	ObjectBytes int     `json:"object_bytes"`
	PutP50Ms    float64 `json:"put_p50_ms"`
	PutP99Ms    float64 `json:"put_p99_ms"`
	// The same for the objects the 1000 records/s phase on 6 partitions wrote: the floor
	// of its latency target.
	LatencyObjectBytes int     `json:"latency_object_bytes"`
	LatencyPutP50Ms    float64 `json:"latency_put_p50_ms"`
	LatencyPutP99Ms    float64 `json:"latency_put_p99_ms"`
	PutMiBPerSec       float64 `json:"put_mib_per_sec_4_concurrent"`
	TxnP50Ms           float64 `json:"etcd_txn_p50_ms"`
	TxnP99Ms           float64 `json:"etcd_txn_p99_ms"`
	LZ4MiBPerSec       float64 `json:"lz4_compress_mib_per_sec"`
	LZ4Ratio           float64 `json:"lz4_ratio"`
	// MinIO is what MinIO's process spends per small PUT and per MiB read.
	MinIO minioCost `json:"minio"`
	// PageCache is what writing into the page cache costs this machine.
	PageCache pageCacheCost `json:"page_cache"`
}

const (
	// floorPuts: the PUTs of the 4-way throughput floor.
	floorPuts = 100
	// floorSequentialPuts, floorTxns: the samples of each latency floor, enough that its
	// p99 is the 99th percentile rather than the slowest of them.
	floorSequentialPuts = 500
	floorTxns           = 500
)

// floorSegmentMeta is the index entry of a segment of 4 records at base in a flush
// object, as a commit of the latency phase puts.
func floorSegmentMeta(base int64) (string, error) {
	now := time.Now().UnixMilli()
	b, err := json.Marshal(coordination.SegmentMeta{Object: "bench/lat/0/00000000000000001234-0194a5c2b3d4e5f6-a1b2c3d4.seg",
		Base: base, Last: base + 3, Records: 4, Bytes: 4096, ZBytes: 3720, MinTs: now, MaxTs: now, Epoch: 1234, WrittenMs: now,
		Requests: []coordination.RequestRef{{ID: 1234567890123456789, Base: base, Count: 4}}})
	return string(b), err
}

func measureFloors(ctx context.Context, dir string, etcd *harness.Etcd, minio *harness.MinIO, objectBytes, latencyObjectBytes float64) (floors, error) {
	f := floors{ObjectBytes: max(int(objectBytes), 1024), LatencyObjectBytes: max(int(latencyObjectBytes), 1024)}
	var err error
	if f.PageCache, err = measurePageCache(dir); err != nil {
		return f, err
	}
	data := harness.RandomText(f.ObjectBytes, 3)

	store, err := objstore.OpenS3(ctx, objstore.S3Options{Bucket: "floors", Endpoint: minio.Endpoint,
		AccessKey: minio.AccessKey, SecretKey: minio.SecretKey, CreateBucket: true})
	if err != nil {
		return f, err
	}
	if f.PutP50Ms, f.PutP99Ms, err = sequentialPuts(ctx, store, "floor/", data); err != nil {
		return f, err
	}
	if f.LatencyPutP50Ms, f.LatencyPutP99Ms, err = sequentialPuts(ctx, store, "floor-small/", harness.RandomText(f.LatencyObjectBytes, 3)); err != nil {
		return f, err
	}
	var keys []string
	for i := range min(floorPuts, 40) {
		keys = append(keys, fmt.Sprintf("floor/%d", i))
	}
	if f.MinIO, err = measureMinIOCost(ctx, minio.Process.Pid(), store, harness.RandomText(f.LatencyObjectBytes, 3), keys, f.ObjectBytes); err != nil {
		return f, err
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for i := range floorPuts / 4 {
				if err := store.Put(ctx, fmt.Sprintf("floor/c%d-%d", w, i), data); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return f, err
	}
	f.PutMiBPerSec = float64(floorPuts/4*4*len(data)) / (1 << 20) / time.Since(start).Seconds()

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return f, err
	}
	defer cli.Close()
	// The shape of a segment commit (coordination.Lease.Commit): compare the lease key's
	// revision (the epoch), the high-water mark's value and the segment key's absence;
	// put the segment's index entry and the new high-water mark; read the three back
	// otherwise.
	lease, err := cli.Put(ctx, "/floor/lease", "owner")
	if err != nil {
		return f, err
	}
	epoch := lease.Header.Revision
	if _, err := cli.Put(ctx, "/floor/hwm", "0"); err != nil {
		return f, err
	}
	var txns []time.Duration
	for i := range floorTxns {
		key := fmt.Sprintf("/floor/seg/%020d", i)
		meta, err := floorSegmentMeta(int64(i * 4))
		if err != nil {
			return f, err
		}
		start := time.Now()
		resp, err := cli.Txn(ctx).If(
			clientv3.Compare(clientv3.CreateRevision("/floor/lease"), "=", epoch),
			clientv3.Compare(clientv3.Value("/floor/hwm"), "=", strconv.Itoa(i*4)),
			clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
		).Then(
			clientv3.OpPut(key, meta),
			clientv3.OpPut("/floor/hwm", strconv.Itoa(i*4+4)),
		).Else(clientv3.OpGet("/floor/lease"), clientv3.OpGet("/floor/hwm"), clientv3.OpGet(key)).Commit()
		if err == nil && !resp.Succeeded {
			err = fmt.Errorf("floor transaction %d: its compare failed", i)
		}
		if err != nil {
			return f, err
		}
		txns = append(txns, time.Since(start))
	}
	f.TxnP50Ms, f.TxnP99Ms = percentileMs(txns, 0.5), percentileMs(txns, 0.99)

	// Raw LZ4 block compression of the same bytes, best of three passes.
	buf := make([]byte, lz4.CompressBlockBound(len(data)))
	var c lz4.Compressor
	for range 3 {
		start := time.Now()
		n := 0
		for range 20 {
			var err error
			if n, err = c.CompressBlock(data, buf); err != nil {
				return f, err
			}
		}
		f.LZ4MiBPerSec = max(f.LZ4MiBPerSec, float64(20*len(data))/(1<<20)/time.Since(start).Seconds())
		f.LZ4Ratio = float64(len(data)) / float64(n)
	}
	return f, nil
}

// sequentialPuts writes data floorSequentialPuts times, one PUT after the other, and
// returns the p50 and p99 of their latency in ms.
func sequentialPuts(ctx context.Context, store objstore.Store, prefix string, data []byte) (p50, p99 float64, err error) {
	var puts []time.Duration
	for i := range floorSequentialPuts {
		start := time.Now()
		if err := store.Put(ctx, fmt.Sprintf("%s%d", prefix, i), data); err != nil {
			return 0, 0, err
		}
		puts = append(puts, time.Since(start))
	}
	return percentileMs(puts, 0.5), percentileMs(puts, 0.99), nil
}

// percentileMs is the q-quantile of d in ms, by nearest rank: the smallest sample with
// at least q of the samples at or below it.
func percentileMs(d []time.Duration, q float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	i := max(min(int(math.Ceil(q*float64(len(s))))-1, len(s)-1), 0)
	return float64(s[i].Microseconds()) / 1000
}
