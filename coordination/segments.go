package coordination

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// HWM returns a partition's committed high-water mark: the offset the next record will
// get, 0 for a partition that never had an owner.
func (c *Client) HWM(ctx context.Context, topic string, partition int32) (int64, error) {
	if _, _, err := c.checkPartition(ctx, topic, partition); err != nil {
		return 0, err
	}
	return c.hwm(ctx, topic, partition)
}

// HWMAt reads a partition's high-water mark as it was at revision rev (0: now), without
// checking the partition exists.
func (c *Client) HWMAt(ctx context.Context, topic string, partition int32, rev int64) (int64, error) {
	resp, err := c.etcd.Get(ctx, c.keys.HWM(topic, partition), clientv3.WithRev(rev))
	if err != nil {
		return 0, fmt.Errorf("hwm %s/%d (revision %d, 0 now): %w", topic, partition, rev, err)
	}
	return parseHWM(resp.Kvs)
}

// hwm reads a high-water mark now without checking the partition exists.
func (c *Client) hwm(ctx context.Context, topic string, partition int32) (int64, error) {
	return c.HWMAt(ctx, topic, partition, 0)
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
// from may equal the high-water mark (the log end: no segments); past it, or before the
// log start offset (what retention removed), is an OffsetRangeError (ErrOffsetOutOfRange).
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
	end := clientv3.GetPrefixRangeEnd(prefix)
	fromKey := c.keys.Segment(topic, partition, from)
	after := []clientv3.OpOption{clientv3.WithRange(end)}
	if limit > 0 {
		after = append(after, clientv3.WithLimit(int64(limit)))
	}
	resp, err := c.etcd.Txn(ctx).Then(
		clientv3.OpGet(c.keys.HWM(topic, partition)),
		// The segment starting at from: the floor when a reader goes on from where it was.
		clientv3.OpGet(fromKey),
		// Every segment starting after from.
		clientv3.OpGet(fromKey+"\x00", after...),
	).Commit()
	if err != nil {
		return nil, 0, fmt.Errorf("segments %s/%d from %d: %w", topic, partition, from, err)
	}
	rev := resp.Header.Revision
	hwm, err := parseHWM(resp.Responses[0].GetResponseRange().Kvs)
	if err != nil {
		return nil, 0, err
	}
	floor := resp.Responses[1].GetResponseRange().Kvs
	if len(floor) == 0 && from < hwm {
		// from is inside a segment that starts before it, or before the log start.
		if floor, err = c.floor(ctx, topic, partition, from, rev); err != nil {
			return nil, hwm, err
		}
	}
	if from > hwm || (len(floor) == 0 && from < hwm) {
		// The log start is read only here: etcd counts every key of a limited range, so
		// reading the first of a partition's index costs as many keys as it holds.
		start, err := c.logStart(ctx, topic, partition, hwm, rev)
		if err != nil {
			return nil, hwm, err
		}
		return nil, hwm, &OffsetRangeError{Topic: topic, Partition: partition, Offset: from, LogStart: start, HWM: hwm}
	}
	kvs := append(floor, resp.Responses[2].GetResponseRange().Kvs...)
	out := make([]SegmentMeta, 0, len(kvs))
	for _, kv := range kvs {
		m, err := decodeSegment(kv)
		if err != nil {
			return nil, hwm, err
		}
		if m.Last < from {
			continue // the floor ends before from (from is the log end)
		}
		out = append(out, m)
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, hwm, nil
}

// floor returns the index entry of the last segment starting before from, read at
// revision rev, or none when no segment does (from is before the log start).
//
// etcd reads every entry of a range before it applies a sorted read's limit, so the last
// key below from is not one descending read of limit 1: in a partition of 20,000
// segments that took 21-25 ms (BenchmarkSegmentsAt). floor instead asks for windows of
// offsets, each a range of limit 1 whose answer carries its first key and how many it
// holds (etcd stops reading a range's entries at its limit and counts the rest in its
// in-memory index; keys only, so that no value travels). The windows go back from from,
// floorSpan offsets wide first and floorGrowth times wider each, floorWindows in a
// transaction, until one holds a key; that window, while it holds several, is cut into
// floorSplit and the last of them that holds one taken. Then it reads the one entry.
func (c *Client) floor(ctx context.Context, topic string, partition int32, from, rev int64) ([]*mvccpb.KeyValue, error) {
	type window struct{ lo, hi int64 }
	// first asks for each window's first key and count, and returns the last window
	// that holds any, with them; count 0 when none does.
	first := func(ws []window) (w window, key []byte, count int64, err error) {
		ops := make([]clientv3.Op, len(ws))
		for i, w := range ws {
			ops[i] = clientv3.OpGet(c.keys.Segment(topic, partition, w.lo),
				clientv3.WithRange(c.keys.Segment(topic, partition, w.hi)), clientv3.WithKeysOnly(),
				clientv3.WithLimit(1), clientv3.WithRev(rev))
		}
		resp, err := c.etcd.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return w, nil, 0, fmt.Errorf("segment of %s/%d holding %d: %w", topic, partition, from, err)
		}
		for i := len(ws) - 1; i >= 0; i-- {
			if r := resp.Responses[i].GetResponseRange(); r.Count > 0 {
				return ws[i], r.Kvs[0].Key, r.Count, nil
			}
		}
		return w, nil, 0, nil
	}
	var w window
	var key []byte
	var count int64
	var err error
	for hi, span := from, int64(floorSpan); count == 0 && hi > 0; {
		// The next floorWindows windows, nearest last.
		var ws []window
		for range floorWindows {
			if hi == 0 {
				break
			}
			lo := hi - min(span, hi)
			ws = append([]window{{lo, hi}}, ws...)
			hi = lo
			span = min(span, math.MaxInt64/floorGrowth) * floorGrowth
		}
		if w, key, count, err = first(ws); err != nil {
			return nil, err
		}
	}
	for count > 1 {
		// Several keys in w: the floor is the last; the last part of w that holds one.
		// Within the client's MaxTxnOps, which may be below etcd's default.
		step := (w.hi-w.lo)/int64(min(floorSplit, c.opts.MaxTxnOps)) + 1
		var ws []window
		for lo := w.lo; lo < w.hi; {
			n := min(step, w.hi-lo)
			ws = append(ws, window{lo, lo + n})
			lo += n
		}
		if w, key, count, err = first(ws); err != nil {
			return nil, err
		}
	}
	if count == 0 {
		return nil, nil
	}
	got, err := c.etcd.Get(ctx, string(key), clientv3.WithRev(rev))
	if err != nil {
		return nil, fmt.Errorf("segment of %s/%d holding %d: %w", topic, partition, from, err)
	}
	return got.Kvs, nil
}

// floor's windows: the first spans floorSpan offsets before from, and each next one
// floorGrowth times as many before that, floorWindows to a transaction (a floor within
// 64 Ki offsets, a merged segment of 1 KiB records, takes one); a window of several
// keys is cut into floorSplit (a transaction can hold 128 operations by etcd's default).
const (
	floorSpan    = 64
	floorGrowth  = 16
	floorWindows = 4
	floorSplit   = 64
)

// logStart is the base of a partition's first segment at revision rev (0: now), or the
// high-water mark hwm when retention has removed every segment (or none was ever
// committed). It reads the first segment's key alone, which names its base: an entry
// whose value does not decode must not keep a partition from starting (the compactor's
// load reports it).
func (c *Client) logStart(ctx context.Context, topic string, partition int32, hwm, rev int64) (int64, error) {
	prefix := c.keys.Segments(topic, partition)
	resp, err := c.etcd.Get(ctx, prefix, clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)),
		clientv3.WithLimit(1), clientv3.WithRev(rev), clientv3.WithKeysOnly())
	if err != nil {
		return 0, fmt.Errorf("log start of %s/%d: %w", topic, partition, err)
	}
	if len(resp.Kvs) == 0 {
		return hwm, nil
	}
	key := string(resp.Kvs[0].Key)
	base, err := strconv.ParseInt(strings.TrimPrefix(key, prefix), 10, 64)
	if err != nil || base < 0 {
		return 0, fmt.Errorf("log start of %s/%d: segment key %q names no offset", topic, partition, key)
	}
	return base, nil
}

// RecentSegments returns the partition's last segments below hwm, oldest first, for
// the requests written in them (SegmentMeta.Requests): at most limit of them, back to
// the first written more than memory before the last (0: no such bound), and no further
// back once those read list maxRequests. Times are the writers' clocks, which need not
// agree with the caller's: a writer's running behind, against the caller's, had the
// search stop at the newest few segments.
// An entry it cannot decode is skipped and logged: its caller's memory of requests is
// best effort, and one bad entry must not keep the partition from starting.
//
// It finds them by their keys alone, in windows of offsets back from hwm growing four
// times each (etcd limits an ascending range on the server, but reads every key of a
// sorted one), then reads their values newest first, recentChunk at a time.
func (l *Lease) RecentSegments(ctx context.Context, hwm int64, limit, maxRequests int, memory time.Duration) ([]SegmentMeta, error) {
	if limit <= 0 || maxRequests <= 0 || hwm < 0 {
		return nil, invalidf("recent segments: limit %d, max requests %d, hwm %d", limit, maxRequests, hwm)
	}
	keys := l.s.c.keys
	end := keys.Segment(l.p.Topic, l.p.Partition, hwm) // what etcd counts ends at hwm too
	get := func(from, to string, n int, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
		opts = append(opts, clientv3.WithRange(to), clientv3.WithLimit(int64(n)))
		resp, err := l.s.c.etcd.Get(ctx, from, opts...)
		if err != nil {
			return nil, fmt.Errorf("recent segments of %s: %w", l.p, err)
		}
		return resp, nil
	}
	decode := func(kvs []*mvccpb.KeyValue) []SegmentMeta {
		out := make([]SegmentMeta, 0, len(kvs))
		for _, kv := range kvs {
			m, err := decodeSegment(kv)
			if err != nil {
				l.log.Warn("recent segment skipped", zap.Error(err))
				continue
			}
			out = append(out, m)
		}
		return out
	}
	var fit [][]byte              // the keys of the segments wanted, oldest first
	since := int64(math.MinInt64) // the WrittenMs before which none is wanted
	for span := int64(limit); ; {
		from := max(0, hwm-span)
		resp, err := get(keys.Segment(l.p.Topic, l.p.Partition, from), end, limit+1, clientv3.WithKeysOnly())
		if err != nil {
			return nil, err
		}
		fit = fit[:0]
		for _, kv := range resp.Kvs {
			fit = append(fit, kv.Key)
		}
		if memory > 0 && since == math.MinInt64 && len(fit) > 0 {
			last := string(fit[len(fit)-1])
			newest, err := get(last, last+"\x00", 1)
			if err != nil {
				return nil, err
			}
			if m := decode(newest.Kvs); len(m) == 1 {
				since = m[0].WrittenMs - memory.Milliseconds()
			}
		}
		if len(fit) > limit {
			// More than limit in this window: its last limit, paging its keys to the end.
			for resp.More {
				if resp, err = get(string(fit[len(fit)-1])+"\x00", end, recentChunk*32, clientv3.WithKeysOnly()); err != nil {
					return nil, err
				}
				for _, kv := range resp.Kvs {
					fit = append(fit, kv.Key)
				}
				fit = fit[len(fit)-limit:]
			}
			fit = fit[len(fit)-limit:]
			break
		}
		if from == 0 || len(fit) == limit {
			break
		}
		if len(fit) > 0 {
			first, err := get(string(fit[0]), string(fit[0])+"\x00", 1)
			if err != nil {
				return nil, err
			}
			if m := decode(first.Kvs); len(m) == 1 && m[0].WrittenMs < since {
				break
			}
		}
		if span > hwm/4 {
			span = hwm
		} else {
			span *= 4
		}
	}
	// Their values, newest first, until far enough back.
	var chunks [][]SegmentMeta
	requests := 0
	for hi := len(fit); hi > 0 && requests < maxRequests; hi -= recentChunk {
		lo := max(0, hi-recentChunk)
		resp, err := get(string(fit[lo]), string(fit[hi-1])+"\x00", hi-lo)
		if err != nil {
			return nil, err
		}
		ms := decode(resp.Kvs)
		chunks = append(chunks, ms)
		for _, m := range ms {
			requests += len(m.Requests)
		}
		if len(ms) > 0 && ms[0].WrittenMs < since {
			break
		}
	}
	var out []SegmentMeta
	for i := len(chunks) - 1; i >= 0; i-- {
		out = append(out, chunks[i]...)
	}
	return out, nil
}

// recentChunk is how many segment values RecentSegments reads at a time.
const recentChunk = 16

func decodeSegment(kv *mvccpb.KeyValue) (SegmentMeta, error) {
	var m SegmentMeta
	if err := json.Unmarshal(kv.Value, &m); err != nil {
		return m, fmt.Errorf("segment %s: bad value %q", kv.Key, kv.Value)
	}
	if err := m.check(); err != nil {
		return m, fmt.Errorf("segment %s: bad value %q: %w", kv.Key, kv.Value, err)
	}
	return m, nil
}

// indexPage is how many keys a paged read (scan) reads per request.
const indexPage = 1000

// scan calls fn for every key under prefix, read in pages at one revision (rev, or the
// current one when 0), and returns that revision.
func (c *Client) scan(ctx context.Context, prefix string, rev int64, fn func(*mvccpb.KeyValue) error) (int64, error) {
	return c.scanRange(ctx, prefix, clientv3.GetPrefixRangeEnd(prefix), rev, fn)
}

// scanRange is scan over the keys in [key, end).
func (c *Client) scanRange(ctx context.Context, key, end string, rev int64, fn func(*mvccpb.KeyValue) error) (int64, error) {
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(indexPage)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := c.etcd.Get(ctx, key, opts...)
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			// The first page's: a read at an older revision still reports etcd's latest
			// in its header, which later pages must not move to.
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if err := fn(kv); err != nil {
				return rev, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
