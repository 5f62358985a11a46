package coordination

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// HWM returns a partition's committed high-water mark: the offset the next record will
// get, 0 for a partition that never had an owner.
func (c *Client) HWM(ctx context.Context, topic string, partition int32) (int64, error) {
	if _, _, err := c.checkPartition(ctx, topic, partition); err != nil {
		return 0, err
	}
	return c.hwm(ctx, topic, partition)
}

// hwm reads a high-water mark without checking the partition exists.
func (c *Client) hwm(ctx context.Context, topic string, partition int32) (int64, error) {
	resp, err := c.etcd.Get(ctx, c.keys.HWM(topic, partition))
	if err != nil {
		return 0, fmt.Errorf("hwm %s/%d: %w", topic, partition, err)
	}
	return parseHWM(resp.Kvs)
}

func parseHWM(kvs []*mvccpb.KeyValue) (int64, error) {
	if len(kvs) == 0 {
		return 0, nil
	}
	hwm, err := strconv.ParseInt(string(kvs[0].Value), 10, 64)
	if err != nil || hwm < 0 {
		return 0, fmt.Errorf("hwm %s: bad value %q", kvs[0].Key, kvs[0].Value)
	}
	return hwm, nil
}

// Segments lists a partition's committed segments that hold offsets ≥ from: the last
// segment whose base is ≤ from, then every later one, at most limit of them (0 means no
// limit), read at one revision. It also returns the high-water mark at that revision.
// from may equal the high-water mark (the log end: no segments); past it is
// ErrOffsetOutOfRange.
func (c *Client) Segments(ctx context.Context, topic string, partition int32, from int64, limit int) ([]SegmentMeta, int64, error) {
	if _, _, err := c.checkPartition(ctx, topic, partition); err != nil {
		return nil, 0, err
	}
	if from < 0 {
		return nil, 0, invalidf("offset %d is negative", from)
	}
	if limit < 0 {
		return nil, 0, invalidf("limit %d is negative", limit)
	}
	prefix := c.keys.Segments(topic, partition)
	fromKey := c.keys.Segment(topic, partition, from)
	after := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix))}
	if limit > 0 {
		after = append(after, clientv3.WithLimit(int64(limit)))
	}
	resp, err := c.etcd.Txn(ctx).Then(
		clientv3.OpGet(c.keys.HWM(topic, partition)),
		// The floor: the last segment starting at or before from.
		clientv3.OpGet(prefix, clientv3.WithRange(fromKey+"\x00"), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1)),
		// Every segment starting after from.
		clientv3.OpGet(fromKey+"\x00", after...),
	).Commit()
	if err != nil {
		return nil, 0, fmt.Errorf("segments %s/%d from %d: %w", topic, partition, from, err)
	}
	hwm, err := parseHWM(resp.Responses[0].GetResponseRange().Kvs)
	if err != nil {
		return nil, 0, err
	}
	if from > hwm {
		return nil, hwm, fmt.Errorf("%w: %s/%d offset %d is past the high-water mark %d", ErrOffsetOutOfRange, topic, partition, from, hwm)
	}
	kvs := append(resp.Responses[1].GetResponseRange().Kvs, resp.Responses[2].GetResponseRange().Kvs...)
	out := make([]SegmentMeta, 0, len(kvs))
	for _, kv := range kvs {
		var m SegmentMeta
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			return nil, hwm, fmt.Errorf("segment %s: %w", kv.Key, err)
		}
		if m.Last < from {
			continue // the floor ends before from (a gap left by compaction or the end)
		}
		out = append(out, m)
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, hwm, nil
}

// indexPage is how many segment keys IndexedObjects reads per request.
const indexPage = 1000

// IndexedObjects returns every object named by a segment of the index (all topics,
// deleted ones included), read in pages at one revision, and that revision. An object
// that is not in the set at revision rev was not committed at rev.
func (c *Client) IndexedObjects(ctx context.Context) (map[string]bool, int64, error) {
	prefix := c.keys.Root() + SegmentsPrefix
	end := clientv3.GetPrefixRangeEnd(prefix)
	objects := map[string]bool{}
	key, rev := prefix, int64(0)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(indexPage)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := c.etcd.Get(ctx, key, opts...)
		if err != nil {
			return nil, 0, fmt.Errorf("read the segment index: %w", err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			var m SegmentMeta
			if err := json.Unmarshal(kv.Value, &m); err != nil || m.Object == "" {
				return nil, 0, fmt.Errorf("read the segment index: %s: bad value %q", kv.Key, kv.Value)
			}
			objects[m.Object] = true
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return objects, rev, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
