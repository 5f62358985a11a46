package coordination_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/streamhouse/streamhouse/coordination"
)

// tenSegments commits [0,9] [10,19] ... [90,99] to t/0 and returns the lease, the metas
// and the revision after the last commit.
func tenSegments(t *testing.T, c *coordination.Client) (*coordination.Lease, []coordination.SegmentMeta, int64) {
	t.Helper()
	mustTopic(t, c, "t", 1)
	l, err := mustSession(t, c, "a", 0).Acquire(ctxT(t), "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	var segs []coordination.SegmentMeta
	var rev int64
	for base := int64(0); base < 100; base += 10 {
		m := segment(base, 10, l.Epoch())
		m.MinTs, m.MaxTs = base, base
		if rev, err = l.Commit(ctxT(t), m); err != nil {
			t.Fatal(err)
		}
		segs = append(segs, m)
	}
	return l, segs, rev
}

func bases(t *testing.T, c *coordination.Client) []int64 {
	t.Helper()
	segs, _, err := c.SegmentRange(ctxT(t), "t", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return basesOf(segs)
}

func TestRewriteMergesARunInOneFencedSwap(t *testing.T) {
	c := newClient(t)
	l, segs, rev := tenSegments(t, c)
	ctx := ctxT(t)
	merged := coordination.SegmentMeta{Object: "data/merged-1.obj", Base: 20, Last: 59, Records: 40, Bytes: 4000, ZBytes: 900, Epoch: l.Epoch()}
	tomb := &coordination.Tombstone{Objects: []string{segs[2].Object, segs[3].Object}, Reason: coordination.RemovedByMerge}
	if _, err := l.Rewrite(ctx, segs[2:6], rev, &merged, tomb); err != nil {
		t.Fatal(err)
	}
	if got, want := bases(t, c), []int64{0, 10, 20, 60, 70, 80, 90}; !equalInts(got, want) {
		t.Fatalf("index after merge: %v, want %v", got, want)
	}
	// Readers at any offset of the merged run find the merged segment.
	for _, from := range []int64{20, 35, 59} {
		got, hwm, err := c.Segments(ctx, "t", 0, from, 1)
		if err != nil || hwm != 100 || len(got) != 1 || !reflect.DeepEqual(got[0], merged) {
			t.Fatalf("segments from %d: %+v hwm %d %v", from, got, hwm, err)
		}
	}
	x, err := c.ObjectIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !x.Indexed[merged.Object] || x.Indexed[segs[2].Object] || x.Indexed[segs[5].Object] || !x.Indexed[segs[6].Object] {
		t.Fatalf("indexed objects after merge: %v", x.Indexed)
	}
	if len(x.Tombstones) != 1 || x.Removed[segs[2].Object].RemovedAt == 0 || x.Removed[segs[3].Object].Key != x.Tombstones[0].Key {
		t.Fatalf("tombstones: %+v removed %+v", x.Tombstones, x.Removed)
	}
	if _, ok := x.Removed[segs[4].Object]; ok {
		t.Fatal("an object the tombstone does not name is in Removed")
	}
	// The same rewrite again (a stale view): the index changed, nothing written.
	before := dump(t, c)
	if _, err := l.Rewrite(ctx, segs[6:8], 1, &coordination.SegmentMeta{Object: "x", Base: 60, Last: 79, Records: 20, Epoch: l.Epoch()}, nil); !errors.Is(err, coordination.ErrIndexChanged) {
		t.Fatalf("rewrite of keys changed after asOf: %v, want ErrIndexChanged", err)
	}
	if _, err := l.Rewrite(ctx, segs[2:4], rev, nil, nil); !errors.Is(err, coordination.ErrIndexChanged) {
		t.Fatalf("rewrite of a run merged away: %v, want ErrIndexChanged", err)
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatal("a refused rewrite changed etcd")
	}
}

// linked returns the index entry of segs merged by reference: their pieces, where they are.
func linked(segs []coordination.SegmentMeta, epoch int64) coordination.SegmentMeta {
	first, last := segs[0], segs[len(segs)-1]
	m := coordination.SegmentMeta{Base: first.Base, Last: last.Last, Epoch: epoch}
	for _, s := range segs {
		m.Parts = append(m.Parts, s.Pieces()...)
		m.Records, m.Bytes, m.ZBytes = m.Records+s.Records, m.Bytes+s.Bytes, m.ZBytes+s.ZBytes
	}
	return m
}

// A merge by reference puts one key listing the run's pieces where they are: readers
// find them, the sweeper sees every piece's object as indexed, and retention or a topic's
// purge tombstones every one of them.
func TestRewriteLinksARunWhereItIsStored(t *testing.T) {
	c := newClient(t)
	l, segs, rev := tenSegments(t, c)
	ctx := ctxT(t)
	inner := linked(segs[2:4], l.Epoch())
	if _, err := l.Rewrite(ctx, segs[2:4], rev, &inner, nil); err != nil {
		t.Fatal(err)
	}
	// A linked segment linked again lists the pieces, not the linked segment.
	run, rev, err := c.SegmentRange(ctx, "t", 0, 20)
	if err != nil {
		t.Fatal(err)
	}
	outer := linked(run[:3], l.Epoch())
	if rev, err = l.Rewrite(ctx, run[:3], rev, &outer, nil); err != nil {
		t.Fatal(err)
	}
	if len(outer.Parts) != 4 || !reflect.DeepEqual(outer.Parts[2], segs[4].Pieces()[0]) {
		t.Fatalf("parts of the linked segment: %+v", outer.Parts)
	}
	for _, from := range []int64{20, 35, 59} {
		got, _, err := c.Segments(ctx, "t", 0, from, 1)
		if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], outer) {
			t.Fatalf("segments from %d: %+v %v", from, got, err)
		}
	}
	x, err := c.ObjectIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		if !x.Indexed[s.Object] {
			t.Errorf("object %s of [%d, %d] is not indexed after the links", s.Object, s.Base, s.Last)
		}
	}
	if len(x.Tombstones) != 0 {
		t.Errorf("a link left tombstones: %+v", x.Tombstones)
	}
	// Retention removes the linked segment and names all its objects for the sweeper.
	if _, err := l.Rewrite(ctx, append(segs[:2:2], outer), rev, nil, &coordination.Tombstone{Objects: outer.Objects(), Reason: coordination.RemovedByRetention}); err != nil {
		t.Fatal(err)
	}
	if x, err = c.ObjectIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range segs[2:6] {
		if x.Indexed[s.Object] || x.Removed[s.Object].RemovedAt == 0 {
			t.Errorf("object %s after retention: indexed %v, removed %+v", s.Object, x.Indexed[s.Object], x.Removed[s.Object])
		}
	}
}

func TestRewriteRefusesBadRunsAndOldEpochs(t *testing.T) {
	c := newClient(t)
	l, segs, rev := tenSegments(t, c)
	ctx := ctxT(t)
	before := dump(t, c)
	for name, tc := range map[string]struct {
		old  []coordination.SegmentMeta
		with *coordination.SegmentMeta
	}{
		"no segments":      {nil, nil},
		"not adjacent":     {[]coordination.SegmentMeta{segs[1], segs[3]}, nil},
		"merged too short": {segs[1:3], &coordination.SegmentMeta{Object: "o", Base: 10, Last: 28, Records: 19, Epoch: l.Epoch()}},
		"other epoch":      {segs[1:3], &coordination.SegmentMeta{Object: "o", Base: 10, Last: 29, Records: 20, Epoch: l.Epoch() + 1}},
		"no object":        {segs[1:3], &coordination.SegmentMeta{Base: 10, Last: 29, Records: 20, Epoch: l.Epoch()}},
		"parts and object": {segs[1:3], func() *coordination.SegmentMeta { m := linked(segs[1:3], l.Epoch()); m.Object = "o"; return &m }()},
		"parts with a gap": {segs[1:3], func() *coordination.SegmentMeta { m := linked(segs[1:3], l.Epoch()); m.Parts[1].Base++; return &m }()},
		"parts too short":  {segs[1:3], func() *coordination.SegmentMeta { m := linked(segs[1:3], l.Epoch()); m.Parts = m.Parts[:1]; return &m }()},
		"parts' bytes":     {segs[1:3], func() *coordination.SegmentMeta { m := linked(segs[1:3], l.Epoch()); m.ZBytes++; return &m }()},
		"part no object":   {segs[1:3], func() *coordination.SegmentMeta { m := linked(segs[1:3], l.Epoch()); m.Parts[0].Object = ""; return &m }()},
	} {
		if _, err := l.Rewrite(ctx, tc.old, rev, tc.with, nil); !errors.Is(err, coordination.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	// A new owner fences the old one's rewrites.
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := mustSession(t, c, "b", 0).Acquire(ctx, "t", 0); err != nil {
		t.Fatal(err)
	}
	before = dump(t, c)
	if _, err := l.Rewrite(ctx, segs[:2], rev, nil, nil); !errors.Is(err, coordination.ErrFenced) {
		t.Fatalf("rewrite by a former owner: %v, want ErrFenced", err)
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatal("a fenced rewrite changed etcd")
	}
}

func TestRetentionMovesTheLogStart(t *testing.T) {
	c := newClient(t)
	l, segs, rev := tenSegments(t, c)
	ctx := ctxT(t)
	if _, err := l.Rewrite(ctx, segs[:3], rev, nil, &coordination.Tombstone{Objects: []string{segs[0].Object}, Reason: coordination.RemovedByRetention}); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.Segments(ctx, "t", 0, 29, 0)
	var re *coordination.OffsetRangeError
	if !errors.As(err, &re) || re.LogStart != 30 || re.HWM != 100 || !errors.Is(err, coordination.ErrOffsetOutOfRange) {
		t.Fatalf("read below the log start: %v", err)
	}
	if !strings.Contains(err.Error(), "before the log start offset 30") {
		t.Fatalf("message does not say where the log starts: %v", err)
	}
	if got, _, err := c.Segments(ctx, "t", 0, 30, 1); err != nil || got[0].Base != 30 {
		t.Fatalf("read at the log start: %+v %v", got, err)
	}
	st, err := c.PartitionStats(ctx, "t", 0)
	if err != nil || st != (coordination.PartitionStats{LogStart: 30, HWM: 100, Segments: 7, StoredBytes: 7 * 400}) {
		t.Fatalf("stats: %+v %v", st, err)
	}
	// Every segment expired: the log starts at the high-water mark, still readable there.
	if _, err := l.Rewrite(ctx, segs[3:], indexRev(t, c), nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Segments(ctx, "t", 0, 99, 0); !errors.As(err, &re) || re.LogStart != 100 {
		t.Fatalf("read below an empty log's start: %v", err)
	}
	if got, hwm, err := c.Segments(ctx, "t", 0, 100, 0); err != nil || hwm != 100 || len(got) != 0 {
		t.Fatalf("read at the end of an empty log: %v %d %v", got, hwm, err)
	}
	// The next commit continues at the high-water mark.
	if _, err := l.Commit(ctx, segment(100, 5, l.Epoch())); err != nil {
		t.Fatal(err)
	}
	if got := bases(t, c); !equalInts(got, []int64{100}) {
		t.Fatalf("index: %v", got)
	}
}

// indexRev is a revision at which t/0's index is as now.
func indexRev(t *testing.T, c *coordination.Client) int64 {
	t.Helper()
	_, rev, err := c.SegmentRange(ctxT(t), "t", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func TestAlterTopicChangesOnlyWhatIsGiven(t *testing.T) {
	c := newClient(t)
	spec := mustTopic(t, c, "t", 3)
	ctx := ctxT(t)
	day, gib := int64(24*time.Hour/time.Millisecond), int64(1<<30)
	got, err := c.AlterTopic(ctx, "t", coordination.TopicChanges{RetentionMs: &day, RetentionBytes: &gib})
	if err != nil {
		t.Fatal(err)
	}
	if got.RetentionMs != day || got.RetentionBytes != gib || got.LingerMs != spec.LingerMs || got.SegmentBytes != spec.SegmentBytes || got.Partitions != 3 {
		t.Fatalf("altered: %+v", got)
	}
	if stored, _ := c.Topic(ctx, "t"); stored != got {
		t.Fatalf("stored %+v, returned %+v", stored, got)
	}
	before := dump(t, c)
	bad := int64(10)
	for name, ch := range map[string]coordination.TopicChanges{
		"retention below a minute": {RetentionMs: &bad},
		"tiny retention bytes":     {RetentionBytes: &bad},
		"tiny merge target":        {MergeBytes: &bad},
	} {
		if _, err := c.AlterTopic(ctx, "t", ch); !errors.Is(err, coordination.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := c.AlterTopic(ctx, "nope", coordination.TopicChanges{RetentionMs: &day}); !errors.Is(err, coordination.ErrTopicNotFound) {
		t.Fatalf("alter of a missing topic: %v", err)
	}
	if after := dump(t, c); !reflect.DeepEqual(before, after) {
		t.Fatal("a refused alter changed etcd")
	}
}

func TestPurgeTopicRemovesEveryKeyAndResumes(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 2)
	mustTopic(t, c, "t2", 1) // a topic whose name extends the deleted one's: untouched
	ctx := ctxT(t)
	s := mustSession(t, c, "a", 0)
	var objects []string
	for _, topic := range []string{"t", "t2"} {
		spec, _ := c.Topic(ctx, topic)
		for p := range spec.Partitions {
			l, err := s.Acquire(ctx, topic, p)
			if err != nil {
				t.Fatal(err)
			}
			for base := int64(0); base < 700; base += 1 {
				m := segment(base, 1, l.Epoch())
				m.Object = objectKey(topic, p, base, l.Epoch())
				if _, err := l.Commit(ctx, m); err != nil {
					t.Fatal(err)
				}
				if topic == "t" {
					objects = append(objects, m.Object)
				}
			}
			if topic == "t" {
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := c.CommitOffsets(ctx, "g", map[coordination.Partition]coordination.GroupOffset{
		{Topic: "t", Partition: 1}: {Offset: 5}, {Topic: "t2", Partition: 0}: {Offset: 7}}); err != nil {
		t.Fatal(err)
	}
	// Not deleted: refused.
	if err := c.PurgeTopic(ctx, "t"); !errors.Is(err, coordination.ErrInvalidArgument) {
		t.Fatalf("purge of a live topic: %v", err)
	}
	// An owner that still holds a partition blocks the purge.
	l := mustAcquire(t, s, "t", 0)
	if err := c.DeleteTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(ctx, "t", 1); !errors.Is(err, coordination.ErrTopicNotFound) {
		t.Fatalf("acquire of a deleted topic's partition: %v", err)
	}
	if err := c.PurgeTopic(ctx, "t"); !errors.Is(err, coordination.ErrTopicBusy) {
		t.Fatalf("purge while a partition has an owner: %v", err)
	}
	if _, err := c.CreateTopic(ctx, coordination.TopicSpec{Name: "t", Partitions: 1}); !errors.Is(err, coordination.ErrTopicExists) {
		t.Fatalf("create while the deleted topic is not purged: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	deleted, err := c.DeletedTopics(ctx)
	if err != nil || len(deleted) != 1 || deleted[0].Name != "t" {
		t.Fatalf("deleted topics: %+v %v", deleted, err)
	}
	// Purges cut short at every point (deadlines from 1 ms, doubling), as crashes would
	// cut them: each later one resumes where the last stopped.
	for d := time.Millisecond; ; d *= 2 {
		pctx, cancel := context.WithTimeout(ctx, d)
		err := c.PurgeTopic(pctx, "t")
		cancel()
		if err == nil {
			break
		}
		if d > 10*time.Second {
			t.Fatalf("purge never completes: %v", err)
		}
	}
	if err := c.PurgeTopic(ctx, "t"); err != nil {
		t.Fatalf("a second purge: %v", err)
	}
	for k := range dump(t, c) {
		if strings.Contains(k, "/t/") && !strings.Contains(k, "/tombstones/") || strings.HasSuffix(k, "/topics/t") {
			t.Errorf("key left by the purge: %s", k)
		}
	}
	mustTombstone(t, c, objects)
	if got := len(segmentsOf(t, c, "t2")); got != 700 {
		t.Fatalf("the other topic has %d segments, want 700", got)
	}
	offs, err := c.FetchOffsets(ctx, "g")
	if err != nil || len(offs) != 1 || offs[coordination.Partition{Topic: "t2", Partition: 0}].Offset != 7 {
		t.Fatalf("group offsets after the purge: %+v %v", offs, err)
	}
	// The name is free again.
	if _, err := c.CreateTopic(ctx, coordination.TopicSpec{Name: "t", Partitions: 1}); err != nil {
		t.Fatalf("create after the purge: %v", err)
	}
}

func segmentsOf(t *testing.T, c *coordination.Client, topic string) []coordination.SegmentMeta {
	t.Helper()
	segs, _, err := c.SegmentRange(ctxT(t), topic, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// mustTombstone fails the test unless a tombstone names each of objects, and returns the
// object index.
func mustTombstone(t *testing.T, c *coordination.Client, objects []string) *coordination.ObjectIndex {
	t.Helper()
	x, err := c.ObjectIndex(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objects {
		if x.Removed[o].RemovedAt == 0 {
			t.Fatalf("object %s of the purged topic has no tombstone", o)
		}
	}
	return x
}

// linkedIndex writes n linked segments of topic's partition 0 straight into etcd, each of
// parts pieces in objects of their own, with names as long as an agent's: the index a
// large partition's merges leave.
func linkedIndex(t *testing.T, c *coordination.Client, topic string, n, parts int) []string {
	t.Helper()
	var objects []string
	var ops []clientv3.Op
	for i := range int64(n) {
		m := coordination.SegmentMeta{Base: i * int64(parts), Last: (i+1)*int64(parts) - 1, Records: int64(parts), Epoch: 1}
		for j := range int64(parts) {
			o := fmt.Sprintf("data/agent-with-a-long-name-1/%012d-%010d.obj", i, j)
			objects = append(objects, o)
			m.Parts = append(m.Parts, coordination.SegmentPart{Object: o, ZBytes: 10, Base: m.Base + j, Last: m.Base + j, Records: 1, Bytes: 100})
			m.ZBytes += 10
			m.Bytes += 100
		}
		v, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if ops = append(ops, clientv3.OpPut(c.Keys().Segment(topic, 0, m.Base), string(v))); len(ops) == 16 || i == int64(n)-1 {
			if _, err := c.Etcd().Txn(ctxT(t)).Then(ops...).Commit(); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	return objects
}

// TestPurgeOfLinkedSegmentsFitsEtcdsRequests: a deleted topic whose purge page would
// name more objects than one etcd request may carry (300 linked segments of 100 pieces:
// 1.8 MB of names against etcd's default 1.5 MiB) is purged in smaller pages, every
// object under a tombstone. Before, the page was refused every time, and the topic,
// its name and every sweep after it stuck.
func TestPurgeOfLinkedSegmentsFitsEtcdsRequests(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "big", 1)
	objects := linkedIndex(t, c, "big", 300, 100)
	ctx := ctxT(t)
	if err := c.DeleteTopic(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	if err := c.PurgeTopic(ctx, "big"); err != nil {
		t.Fatalf("purge: %v", err)
	}
	x := mustTombstone(t, c, objects)
	if len(x.Tombstones) < 4 {
		t.Fatalf("%d tombstones for 1.8 MB of object names, want pages of at most %d bytes", len(x.Tombstones), coordination.MaxTombstoneBytes)
	}
}

func TestSegmentsWithinTombstone(t *testing.T) {
	seg := func(objects ...string) coordination.SegmentMeta {
		m := coordination.SegmentMeta{}
		for _, o := range objects {
			m.Parts = append(m.Parts, coordination.SegmentPart{Object: o})
		}
		return m
	}
	big := strings.Repeat("x", coordination.MaxTombstoneBytes/2)
	for _, tc := range []struct {
		name string
		segs []coordination.SegmentMeta
		want int
	}{
		{"none", nil, 0},
		{"one larger than the bound", []coordination.SegmentMeta{seg(big+"a", big+"b")}, 1},
		{"a second that would pass it", []coordination.SegmentMeta{seg(big + "a"), seg(big + "b"), seg("c")}, 1},
		{"objects shared count once", []coordination.SegmentMeta{seg(big + "a"), seg(big+"a", "c"), seg("d")}, 3},
	} {
		if got := coordination.SegmentsWithinTombstone(tc.segs); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
