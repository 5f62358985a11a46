package kafka_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/coordination"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// request sends req at version (one the listener serves without flexible headers) and
// reads its response.
func (r *rawConn) request(req kmsg.Request, version int16) kmsg.Response {
	r.t.Helper()
	req.SetVersion(version)
	resp := req.ResponseKind()
	resp.SetVersion(version)
	if err := resp.ReadFrom(r.recv(r.send(req.Key(), version, req.AppendTo(nil)))); err != nil {
		r.t.Fatalf("%s v%d: %v", kmsg.NameForKey(req.Key()), version, err)
	}
	return resp
}

// etcdClient is a client of the tests' etcd, closed at the end of the test.
func etcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestCommitsOfAReplacedCoordinatorAreRefused: the agent coordinating a group holds a
// claim on it in etcd (/group-coordinators/<group>, on its session's lease). Once another
// holds the claim (here the test, as another agent would once this one's session ended
// in a pause, or while this one's view of the cluster lags), this agent's commits for the
// group are refused NOT_COORDINATOR and write nothing, its members are sent to rejoin,
// and it answers joins and commits COORDINATOR_LOAD_IN_PROGRESS (retried by clients)
// until the other claim ends; then it coordinates the group again. Before, a coordinator
// committed whatever its members sent, over the offsets of the group's next coordinator.
func TestCommitsOfAReplacedCoordinatorAreRefused(t *testing.T) {
	c := newCluster(t, 1, nil)
	const topic, group = "claimed", "claimed-group"
	c.createTopic(topic, 1, nil)
	c.produceAtOnce(topic, 1, 10, 100, func(int) []kgo.Opt { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	etcdc := etcdClient(t)
	coord, err := coordination.New(etcdc, coordination.Options{Root: c.root})
	if err != nil {
		t.Fatal(err)
	}
	claimKey := coord.Keys().GroupCoordinator(group)

	r := dialRaw(t, c.agents[0].KafkaAddr)
	join := func() *kmsg.JoinGroupResponse {
		return r.join(joinRequest(group, "", 5000), 5)
	}
	sync := func(j *kmsg.JoinGroupResponse) int16 {
		req := kmsg.NewPtrSyncGroupRequest()
		req.Group, req.MemberID, req.Generation = group, j.MemberID, j.Generation
		a := kmsg.NewSyncGroupRequestGroupAssignment()
		a.MemberID, a.MemberAssignment = j.MemberID, []byte{0}
		req.GroupAssignment = append(req.GroupAssignment, a)
		return r.request(req, 3).(*kmsg.SyncGroupResponse).ErrorCode
	}
	commit := func(member string, generation int32, offset int64) int16 {
		return r.request(commitRequest(group, member, generation, topic, offset), 7).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
	}
	committed := func() int64 {
		t.Helper()
		got, err := coord.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		return got[coordination.Partition{Topic: topic, Partition: 0}].Offset
	}

	j := join()
	if j.ErrorCode != 0 || sync(j) != 0 {
		t.Fatalf("join: %+v", j)
	}
	if code := commit(j.MemberID, j.Generation, 3); code != 0 {
		t.Fatalf("commit of the group's member: code %d", code)
	}
	held, err := etcdc.Get(ctx, claimKey)
	if err != nil || len(held.Kvs) != 1 || !strings.Contains(string(held.Kvs[0].Value), `"node":"agent-1"`) || held.Kvs[0].Lease == 0 {
		t.Fatalf("claim of the coordinating agent at %s: %v, %v", claimKey, held, err)
	}

	// Another takes the group over: the agent's claim is gone (its session ended, as
	// far as etcd knows), another's is in its place.
	other, err := etcdc.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := etcdc.Delete(ctx, claimKey); err != nil {
		t.Fatal(err)
	}
	if _, err := etcdc.Put(ctx, claimKey, `{"node":"agent-2"}`, clientv3.WithLease(other.ID)); err != nil {
		t.Fatal(err)
	}
	if code := commit(j.MemberID, j.Generation, 5); code != kerr.NotCoordinator.Code {
		t.Fatalf("commit through a replaced coordinator: code %d, want NOT_COORDINATOR", code)
	}
	if got := committed(); got != 3 {
		t.Fatalf("committed offset %d after a replaced coordinator's commit, want 3", got)
	}
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID, hb.Generation = group, j.MemberID, j.Generation
	if code := r.request(hb, 3).(*kmsg.HeartbeatResponse).ErrorCode; code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat of the replaced coordinator's member: code %d, want UNKNOWN_MEMBER_ID (rejoin)", code)
	}
	if got := join(); got.ErrorCode != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("join while another holds the claim: %+v, want COORDINATOR_LOAD_IN_PROGRESS", got)
	}
	if code := commit("", -1, 7); code != kerr.CoordinatorLoadInProgress.Code || committed() != 3 {
		t.Fatalf("standalone commit while another holds the claim: code %d, offset %d", code, committed())
	}

	// The other claim ends: the agent claims the group again and coordinates it.
	if _, err := etcdc.Revoke(ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	var j2 *kmsg.JoinGroupResponse
	harness.Eventually(t, 10*time.Second, func() error { // retried, as clients do
		if j2 = join(); j2.ErrorCode != 0 {
			return fmt.Errorf("join once the other claim ended: code %d", j2.ErrorCode)
		}
		return nil
	})
	if code := sync(j2); code != 0 {
		t.Fatalf("sync once the other claim ended: code %d", code)
	}
	if code := commit(j2.MemberID, j2.Generation, 8); code != 0 || committed() != 8 {
		t.Fatalf("commit once the group is claimed again: code %d, offset %d", code, committed())
	}
}

// TestStrayClaimIsReleased: a claim on a group held by an agent's live session that the
// agent does not know of (its release failed, or it was written though the answer was
// lost) is found and released by the agent's sweep, so that the group's coordinator,
// another agent, can claim it: before the sweep it answered COORDINATOR_LOAD_IN_PROGRESS
// for as long as the first agent lived.
func TestStrayClaimIsReleased(t *testing.T) {
	c := newCluster(t, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	etcdc := etcdClient(t)
	keys, err := coordination.NewKeys(c.root)
	if err != nil {
		t.Fatal(err)
	}
	r1, r2 := dialRaw(t, c.agents[0].KafkaAddr), dialRaw(t, c.agents[1].KafkaAddr)
	coordinatorOf := func(r *rawConn, group string) string {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKey = group
		resp := r.request(req, 1).(*kmsg.FindCoordinatorResponse)
		return fmt.Sprintf("%s:%d", resp.Host, resp.Port)
	}
	// A group both agents say agent-2 coordinates.
	group := ""
	harness.Eventually(t, 30*time.Second, func() error {
		for i := range 50 {
			name := fmt.Sprintf("stray-%d", i)
			if coordinatorOf(r1, name) == c.agents[1].KafkaAddr && coordinatorOf(r2, name) == c.agents[1].KafkaAddr {
				group = name
				return nil
			}
		}
		return fmt.Errorf("no group of 50 coordinated by agent-2 (%s) in both agents' views; stray-0: %s, %s",
			c.agents[1].KafkaAddr, coordinatorOf(r1, "stray-0"), coordinatorOf(r2, "stray-0"))
	})
	// agent-1's session claims it, and agent-1 knows nothing of it.
	node1, err := etcdc.Get(ctx, keys.Node("agent-1"))
	if err != nil || len(node1.Kvs) != 1 || node1.Kvs[0].Lease == 0 {
		t.Fatalf("agent-1's node key: %v, %v", node1, err)
	}
	if _, err := etcdc.Put(ctx, keys.GroupCoordinator(group), `{"node":"agent-1"}`, clientv3.WithLease(clientv3.LeaseID(node1.Kvs[0].Lease))); err != nil {
		t.Fatal(err)
	}
	join := func() int16 {
		return r2.join(joinRequest(group, "", 5000), 5).ErrorCode
	}
	if code := join(); code != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("join while agent-1's session holds the claim: code %d, want COORDINATOR_LOAD_IN_PROGRESS", code)
	}
	start := time.Now()
	harness.Eventually(t, 3*claimSweepBound, func() error {
		if code := join(); code != 0 {
			return fmt.Errorf("join at agent-2: code %d", code)
		}
		return nil
	})
	t.Logf("agent-2 coordinates %s %s after the stray claim was written", group, time.Since(start).Round(100*time.Millisecond))
}

// claimSweepBound is how often an agent sweeps its stray claims (kafka.claimSweep).
const claimSweepBound = 5 * time.Second

// TestOffsetMetadataIsBounded: a commit's metadata is bounded as Kafka's
// offset.metadata.max.bytes (4096): a partition over it is refused
// OFFSET_METADATA_TOO_LARGE, and the request's other partitions are committed, as a
// Kafka broker does. Before, any size went into etcd, and came back with every fetch of
// the group's offsets.
func TestOffsetMetadataIsBounded(t *testing.T) {
	c := newCluster(t, 1, nil)
	const topic, group = "meta", "meta-group"
	c.createTopic(topic, 2, nil)
	c.produceAtOnce(topic, 1, 20, 100, func(int) []kgo.Opt { return nil })
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := commitRequest(group, "", -1, topic, 1)
	big := strings.Repeat("m", coordination.MaxOffsetMetadataBytes+1)
	req.Topics[0].Partitions[0].Metadata = &big
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 1, 0 // within its high-water mark, whatever was produced to it
	req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[int32]int16{}
	for _, p := range resp.Topics[0].Partitions {
		codes[p.Partition] = p.ErrorCode
	}
	if codes[0] != kerr.OffsetMetadataTooLarge.Code || codes[1] != 0 {
		t.Fatalf("codes %v, want OFFSET_METADATA_TOO_LARGE for partition 0 only", codes)
	}
	fetch := kmsg.NewPtrOffsetFetchRequest()
	fetch.Group = group
	got, err := fetch.RequestWith(ctx, cl)
	if err != nil || got.ErrorCode != 0 || len(got.Topics) != 1 || len(got.Topics[0].Partitions) != 1 || got.Topics[0].Partitions[0].Partition != 1 {
		t.Fatalf("committed: %+v, %v; want partition 1 only", got, err)
	}
}

// TestOffsetCommitRefusesOnlyThePartitionsAtFault: Kafka answers each partition of an
// OffsetCommit on its own. A partition that does not exist, of a topic that does not
// (a consumer's topic deleted under it), or of a name no topic can have, is refused; the
// request's other partitions are committed. Before, one refusal failed every partition of its
// transaction (up to 100), whose progress was then lost. An offset past the high-water
// mark is taken, as Kafka takes it: Kafka clients take a refusal of a commit as fatal.
func TestOffsetCommitRefusesOnlyThePartitionsAtFault(t *testing.T) {
	c := newCluster(t, 1, nil)
	const topic, group = "kept", "kept-group"
	c.createTopic(topic, 2, nil)
	c.produceAtOnce(topic, 1, 20, 100, func(int) []kgo.Opt { return nil })
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := commitRequest(group, "", -1, topic, 0) // kept/0 at 0: within any high-water mark
	for _, p := range []struct {
		partition int32
		offset    int64
	}{{1, 1 << 40}, {9, 0}} {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = p.partition, p.offset
		req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
	}
	gone := commitRequest(group, "", -1, "gone", 0).Topics[0]
	bad := commitRequest(group, "", -1, "bad topic", 0).Topics[0] // no topic has such a name
	req.Topics = append(req.Topics, gone, bad)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int16{}
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			got[fmt.Sprintf("%s/%d", rt.Topic, p.Partition)] = p.ErrorCode
		}
	}
	want := map[string]int16{"kept/0": 0, "kept/1": 0, "kept/9": kerr.UnknownTopicOrPartition.Code,
		"gone/0": kerr.UnknownTopicOrPartition.Code, "bad topic/0": kerr.UnknownTopicOrPartition.Code}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("codes %v, want %v", got, want)
	}
	fetch := kmsg.NewPtrOffsetFetchRequest()
	fetch.Group = group
	committed, err := fetch.RequestWith(ctx, cl)
	if err != nil || committed.ErrorCode != 0 || len(committed.Topics) != 1 {
		t.Fatalf("committed: %+v, %v; want kept's", committed, err)
	}
	offsets := map[int32]int64{}
	for _, p := range committed.Topics[0].Partitions {
		offsets[p.Partition] = p.Offset
	}
	if !reflect.DeepEqual(offsets, map[int32]int64{0: 0, 1: 1 << 40}) {
		t.Fatalf("committed %v, want kept/0 at 0 and kept/1 at 2^40", offsets)
	}
}

// TestGRPCCommitsWaitForAKafkaGroupsCoordinator: the gRPC API's offset commits have no
// group membership; while a Kafka coordinator holds a group, one is refused
// (FailedPrecondition, naming the coordinator) and the group's offsets stay the
// coordinator's. Before, it overwrote them: the group's members then re-read, or
// skipped, what the commit moved them over.
func TestGRPCCommitsWaitForAKafkaGroupsCoordinator(t *testing.T) {
	c := newCluster(t, 1, nil)
	const topic, group = "handover", "handover-group"
	c.createTopic(topic, 1, nil)
	c.produceAtOnce(topic, 1, 20, 100, func(int) []kgo.Opt { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := commitRequest(group, "", -1, topic, 10).RequestWith(ctx, c.client())
	if err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("Kafka commit: %+v, %v", resp, err)
	}
	api := c.grpc(0)
	_, err = api.CommitOffsets(ctx, &pb.CommitOffsetsRequest{Group: group,
		Offsets: []*pb.PartitionOffset{{Topic: topic, Partition: 0, Offset: 3}}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "agent-1") {
		t.Fatalf("gRPC commit to a group its Kafka coordinator holds: %v, want FailedPrecondition naming agent-1", err)
	}
	got, err := api.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: group})
	if err != nil || len(got.Offsets) != 1 || got.Offsets[0].Offset != 10 {
		t.Fatalf("offsets after the refused commit: %v, %v; want the coordinator's 10", got, err)
	}
	// Other groups are the gRPC API's as before.
	if _, err := api.CommitOffsets(ctx, &pb.CommitOffsetsRequest{Group: "grpc-only",
		Offsets: []*pb.PartitionOffset{{Topic: topic, Partition: 0, Offset: 3}}}); err != nil {
		t.Fatalf("gRPC commit to a group no coordinator holds: %v", err)
	}
}
