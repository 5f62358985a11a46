package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/streamhouse/streamhouse/actors"
	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/segmentstore"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/segmentstore/sweeper"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// An agent killed (SIGKILL) in the middle of a merge, after writing the merged object and
// before swapping the index, or right after the swap, leaves a consistent index: every
// acked record reads back, the index is contiguous and names only objects that exist, and
// what the crash left over are unindexed objects, which the sweeper deletes.
//
// A merge that links segments where they are stored (here every merge: any piece is
// worth linking) writes no object, and the sweeper deletes none of the objects its index
// names. (That it left no object behind is not checked: the object of the produce in
// flight when the agent crashed may be left unindexed too.)
func TestCrashMidMergeLeavesAConsistentIndex(t *testing.T) {
	for _, c := range []struct {
		point   string
		args    []string
		orphans bool // the crash leaves unindexed objects
	}{
		{"merge-put", nil, true},
		{"merge-swap", nil, true},
		{"link-swap", []string{"--merge-link-bytes", "1"}, false},
	} {
		point := c.point
		t.Run(point, func(t *testing.T) {
			tc := newCluster(t, 0, 2*time.Second)
			tc.agentEnv = []string{actors.CrashEnv + "=" + point}
			tc.agentArgs = append([]string{"--compact-interval", "200ms"}, c.args...)
			a := tc.addAgent("agent-1", "zone-a", 2*time.Second)
			ctx := context.Background()
			// One partition: its segments are alone in their objects, so a merge frees them.
			if _, err := tc.coord.CreateTopic(ctx, coordination.TopicSpec{Name: "m", Partitions: 1, LingerMs: 1, MergeBytes: 64 << 10}); err != nil {
				t.Fatal(err)
			}
			p := coordination.Partition{Topic: "m", Partition: 0}
			acked := map[int64]string{}
			for n := 0; ; n++ {
				select {
				case <-a.Process.Exited():
				default:
					rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					v := fmt.Sprintf("record-%d", n)
					resp, err := tc.client.Client().Produce(rctx, p, []*partitionpb.Record{{Value: []byte(v)}})
					cancel()
					if err == nil && resp.Code == partitionpb.Code_CODE_OK {
						acked[resp.BaseOffset] = v
					}
					if n < 2000 {
						continue
					}
					t.Fatalf("the agent did not crash at %s after %d records", point, n)
				}
				break
			}
			t.Logf("agent crashed at %s after %d acked records", point, len(acked))
			store, sw := tc.lateSweeper()
			if orphans := tc.checkIndex(store, p, acked); c.orphans && orphans == 0 {
				t.Fatalf("a crash at %s left no unindexed object", point)
			}
			// Restarted, the agent serves every acked record and merges on.
			a.Config.Env = slices.DeleteFunc(a.Config.Env, func(e string) bool { return strings.HasPrefix(e, actors.CrashEnv+"=") })
			if err := a.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			tc.checkRecords(p, acked)
			// Stopped (the sweep below runs on a clock past every grace, which no agent may
			// share), the sweeper deletes every unindexed object; the rest still reads back.
			if err := a.Stop(); err != nil {
				t.Fatal(err)
			}
			pass, err := sw.Sweep(ctx)
			if err != nil || (c.orphans && pass.Deleted == 0) {
				t.Fatalf("sweep: %+v, %v", pass, err)
			}
			if orphans := tc.checkIndex(store, p, acked); orphans != 0 {
				t.Fatalf("%d unindexed objects after the sweep", orphans)
			}
			if err := a.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			tc.checkRecords(p, acked)
		})
	}
}

// checkIndex checks that p's index is contiguous from its log start to its high-water
// mark, covers every acked offset, and names only objects that exist; it returns how many
// objects of the store no segment names.
func (tc *testCluster) checkIndex(store objstore.Store, p coordination.Partition, acked map[int64]string) int {
	tc.t.Helper()
	ctx := context.Background()
	segs, _, err := tc.coord.SegmentRange(ctx, p.Topic, p.Partition, 0)
	if err != nil {
		tc.t.Fatal(err)
	}
	hwm, err := tc.coord.HWM(ctx, p.Topic, p.Partition)
	if err != nil {
		tc.t.Fatal(err)
	}
	next := int64(0)
	indexed := map[string]bool{}
	for _, s := range segs {
		if s.Base != next {
			tc.t.Fatalf("index of %s: segment [%d, %d] where %d was expected", p, s.Base, s.Last, next)
		}
		next = s.Last + 1
		for _, o := range s.Objects() {
			indexed[o] = true
			if _, err := store.Head(ctx, o); err != nil {
				tc.t.Fatalf("indexed object %s: %v", o, err)
			}
		}
	}
	if next != hwm {
		tc.t.Fatalf("index of %s ends at %d, high-water mark %d", p, next, hwm)
	}
	for o := range acked {
		if o >= hwm {
			tc.t.Fatalf("acked offset %d is past the high-water mark %d", o, hwm)
		}
	}
	objects, err := store.List(ctx, segmentstore.DataPrefix)
	if err != nil {
		tc.t.Fatal(err)
	}
	orphans := 0
	for _, o := range objects {
		if !indexed[o.Key] {
			orphans++
		}
	}
	return orphans
}

// checkRecords reads p through the cluster and compares it with what was acked.
func (tc *testCluster) checkRecords(p coordination.Partition, acked map[int64]string) {
	tc.t.Helper()
	recs := tc.readAll(p)
	for o, v := range acked {
		if o >= int64(len(recs)) || string(recs[o].Value) != v {
			tc.t.Fatalf("acked offset %d (%q) does not read back", o, v)
		}
	}
}

// A deleted topic's keys are removed by the agents' sweeper once its partitions have
// stopped, its name is free again, and its objects go a grace period later.
func TestDeletedTopicIsPurged(t *testing.T) {
	tc := newCluster(t, 0, 2*time.Second)
	tc.agentArgs = []string{"--sweep-interval", "500ms"}
	tc.addAgent("agent-1", "zone-a", 2*time.Second)
	ctx := context.Background()
	tc.deleteOneOfTwoTopics()
	harness.Eventually(t, 30*time.Second, func() error {
		resp, err := tc.coord.Etcd().Get(ctx, tc.root+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			k := string(kv.Key)
			if strings.Contains(k, "/gone/") && !strings.Contains(k, "/tombstones/") || strings.HasSuffix(k, "/topics/gone") {
				return fmt.Errorf("key %s is still there", k)
			}
		}
		return nil
	})
	if _, err := tc.coord.CreateTopic(ctx, coordination.TopicSpec{Name: "gone", Partitions: 1}); err != nil {
		t.Fatalf("the name of a purged topic: %v", err)
	}
	if got := len(tc.readAll(coordination.Partition{Topic: "kept"})); got != 20 {
		t.Fatalf("the other topic has %d records, want 20", got)
	}
	// Past the grace (a sweeper on a later clock, which no running agent may share), the
	// purged topic's objects are gone and the other topic's stay.
	if err := tc.agents[0].Stop(); err != nil {
		t.Fatal(err)
	}
	store, sw := tc.lateSweeper()
	if pass, err := sw.Sweep(ctx); err != nil || pass.Deleted == 0 || pass.Indexed == 0 {
		t.Fatalf("sweep: %+v, %v", pass, err)
	}
	// The kept topic's one partition is all the store holds data of now.
	if orphans := tc.checkIndex(store, coordination.Partition{Topic: "kept"}, nil); orphans != 0 {
		t.Fatalf("%d objects the kept topic does not name are left after the sweep", orphans)
	}
}

// A request for a deleted topic that reaches the partition of a topic created since
// under its name (in flight across the delete, the purge and the create, or sent by an
// agent whose mirror is behind) is refused as not found and writes nothing; the new
// topic's own requests are served.
func TestRequestsForADeletedTopicAreNotServedByItsSuccessor(t *testing.T) {
	tc := newCluster(t, 0, 2*time.Second)
	tc.agentArgs = []string{"--sweep-interval", "500ms"}
	tc.addAgent("agent-1", "zone-a", 2*time.Second)
	ctx := context.Background()
	c := tc.client.Client()
	p := coordination.Partition{Topic: "again"}
	produce := func(incarnation int64, v string) *partitionpb.ProduceResponse {
		t.Helper()
		resp, err := c.ProduceRequest(ctx, &partitionpb.ProduceRequest{Topic: p.Topic, Records: []*partitionpb.Record{{Value: []byte(v)}},
			TopicIncarnation: incarnation})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	tc.topic("again", 1)
	old, err := tc.coord.Topic(ctx, "again")
	if err != nil {
		t.Fatal(err)
	}
	if resp := produce(old.Incarnation, "old"); resp.Code != partitionpb.Code_CODE_OK {
		t.Fatalf("produce to the topic: %v", resp)
	}
	if err := tc.coord.DeleteTopic(ctx, "again"); err != nil {
		t.Fatal(err)
	}
	var recreated coordination.TopicSpec
	harness.Eventually(t, 60*time.Second, func() (err error) {
		recreated, err = tc.coord.CreateTopic(ctx, coordination.TopicSpec{Name: "again", Partitions: 1})
		return err
	})
	if resp := produce(recreated.Incarnation, "new"); resp.Code != partitionpb.Code_CODE_OK || resp.BaseOffset != 0 {
		t.Fatalf("produce to the new topic: %v", resp)
	}
	if resp := produce(old.Incarnation, "stale"); resp.Code != partitionpb.Code_CODE_NOT_FOUND {
		t.Fatalf("produce for the deleted topic answered %v, want NOT_FOUND", resp)
	}
	for _, incarnation := range []int64{old.Incarnation, recreated.Incarnation} {
		resp, err := c.Fetch(ctx, &partitionpb.FetchRequest{Topic: p.Topic, Offset: 0, MaxBytes: 1 << 20, TopicIncarnation: incarnation})
		if err != nil {
			t.Fatal(err)
		}
		if want := incarnation == recreated.Incarnation; want != (resp.Code == partitionpb.Code_CODE_OK) ||
			!want && resp.Code != partitionpb.Code_CODE_NOT_FOUND || want && len(resp.Records) != 1 {
			t.Fatalf("fetch of incarnation %d (the new topic's is %d) answered %v", incarnation, recreated.Incarnation, resp)
		}
	}
	if recs := tc.readAll(p); len(recs) != 1 || string(recs[0].Value) != "new" {
		t.Fatalf("the new topic holds %d records, want only its own", len(recs))
	}
}

// A deleted topic is purged as soon as its partitions have stopped, not at the next
// sweep (every 2.5 min by default, as here): its name is free for a create within
// moments, as a script that deletes and creates a topic again expects.
func TestDeletedTopicsNameIsFreeWithinMoments(t *testing.T) {
	tc := newCluster(t, 0, 2*time.Second)
	tc.addAgent("agent-1", "zone-a", 2*time.Second)
	ctx := context.Background()
	tc.deleteOneOfTwoTopics()
	deleted := time.Now()
	harness.Eventually(t, 30*time.Second, func() error {
		_, err := tc.coord.CreateTopic(ctx, coordination.TopicSpec{Name: "gone", Partitions: 1})
		return err
	})
	t.Logf("the name was free %v after the delete", time.Since(deleted).Round(time.Millisecond))
	if got := len(tc.readAll(coordination.Partition{Topic: "gone"})); got != 0 {
		t.Fatalf("the new topic holds %d records, want none of the deleted one's", got)
	}
	if got := len(tc.readAll(coordination.Partition{Topic: "kept"})); got != 20 {
		t.Fatalf("the other topic has %d records, want 20", got)
	}
}

// An agent killed (SIGKILL) in the middle of purging a deleted topic, after its first
// transaction, leaves a consistent state that the restarted agent finishes: every key of
// the topic goes, the other topic is untouched, and the objects go a grace later.
func TestCrashMidPurgeResumes(t *testing.T) {
	tc := newCluster(t, 0, 2*time.Second)
	tc.agentEnv = []string{actors.CrashEnv + "=purge-page"}
	tc.agentArgs = []string{"--sweep-interval", "500ms"}
	a := tc.addAgent("agent-1", "zone-a", 2*time.Second)
	ctx := context.Background()
	tc.deleteOneOfTwoTopics()
	select {
	case <-a.Process.Exited():
	case <-time.After(60 * time.Second):
		t.Fatal("the agent did not crash in the purge")
	}
	// Half done: the first partition's index is gone (with its tombstone), the topic key
	// and the second partition's index are still there.
	keys := func() []string {
		resp, err := tc.coord.Etcd().Get(ctx, tc.root+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, kv := range resp.Kvs {
			if k := string(kv.Key); strings.Contains(k, "/gone") && !strings.Contains(k, "/tombstones/") {
				out = append(out, k)
			}
		}
		return out
	}
	left := keys()
	if !slices.Contains(left, tc.root+"/topics/gone") || slices.ContainsFunc(left, func(k string) bool { return strings.Contains(k, "/segments/gone/0/") }) ||
		!slices.ContainsFunc(left, func(k string) bool { return strings.Contains(k, "/segments/gone/1/") }) {
		t.Fatalf("keys after a crash in the purge: %v", left)
	}
	a.Config.Env = slices.DeleteFunc(a.Config.Env, func(e string) bool { return strings.HasPrefix(e, actors.CrashEnv+"=") })
	if err := a.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, func() error {
		if left := keys(); len(left) > 0 {
			return fmt.Errorf("keys left: %v", left)
		}
		return nil
	})
	if got := len(tc.readAll(coordination.Partition{Topic: "kept"})); got != 20 {
		t.Fatalf("the other topic has %d records, want 20", got)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	store, sw := tc.lateSweeper()
	if pass, err := sw.Sweep(ctx); err != nil || pass.Deleted == 0 {
		t.Fatalf("sweep: %+v, %v", pass, err)
	}
	if orphans := tc.checkIndex(store, coordination.Partition{Topic: "kept"}, nil); orphans != 0 {
		t.Fatalf("%d unindexed objects after the sweep", orphans)
	}
}

// deleteOneOfTwoTopics writes 20 records to each of the topics "gone" (2 partitions) and
// "kept" (1), then deletes "gone".
func (tc *testCluster) deleteOneOfTwoTopics() {
	tc.t.Helper()
	ctx := context.Background()
	tc.topic("gone", 2)
	tc.topic("kept", 1)
	for i := range 20 {
		for _, p := range []coordination.Partition{{Topic: "gone", Partition: int32(i % 2)}, {Topic: "kept"}} {
			if resp, err := tc.client.Client().Produce(ctx, p, []*partitionpb.Record{{Value: fmt.Appendf(nil, "v%d", i)}}); err != nil || resp.Code != partitionpb.Code_CODE_OK {
				tc.t.Fatalf("produce to %s: %v %v", p, resp, err)
			}
		}
	}
	if err := tc.coord.DeleteTopic(ctx, "gone"); err != nil {
		tc.t.Fatal(err)
	}
}

// lateSweeper returns the cluster's store and a sweeper of it with the store's clock
// past every grace period, which no running agent may share: stop the agents first.
func (tc *testCluster) lateSweeper() (objstore.Store, *sweeper.Sweeper) {
	tc.t.Helper()
	store, err := objstore.OpenS3(context.Background(), objstore.S3Options{Bucket: tc.bucket, Endpoint: minio.Endpoint, AccessKey: minio.AccessKey, SecretKey: minio.SecretKey})
	if err != nil {
		tc.t.Fatal(err)
	}
	late := harness.StoreWithClock(store, func() time.Time { return time.Now().Add(2 * sweeper.DefaultGrace) })
	sw, err := sweeper.New(tc.coord, late, sweeper.Options{})
	if err != nil {
		tc.t.Fatal(err)
	}
	return store, sw
}
