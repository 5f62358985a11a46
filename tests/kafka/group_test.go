package kafka_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/tests/harness"
)

// member is one kgo consumer of a group, recording what it is assigned and consumes.
type member struct {
	name     string
	cl       *kgo.Client
	mu       sync.Mutex
	assigned map[int32]bool
	revokes  int            // partitions revoked or lost, in all
	got      map[string]int // value -> times consumed
	cancel   context.CancelFunc
	done     chan struct{}
}

// startMember starts a kgo consumer of group, with opts after the defaults.
func startMember(t *testing.T, c *cluster, group, topic, name string, opts ...kgo.Opt) *member {
	m := &member{name: name, assigned: map[int32]bool{}, got: map[string]int{}, done: make(chan struct{})}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.seeds()...), kgo.ClientID(name),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range a[topic] {
				m.assigned[p] = true
			}
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, r map[string][]int32) {
			_ = cl.CommitMarkedOffsets(ctx)
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range r[topic] {
				delete(m.assigned, p)
			}
			m.revokes += len(r[topic])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range l[topic] {
				delete(m.assigned, p)
			}
			m.revokes += len(l[topic])
		}),
		kgo.AutoCommitMarks(), kgo.AutoCommitInterval(200 * time.Millisecond),
		// Partitions move only between polls, after what a poll returned is marked, so that
		// what the revoke callback commits covers every record consumed.
		kgo.BlockRebalanceOnPoll()}, opts...)...,
	)
	if err != nil {
		t.Fatal(err)
	}
	m.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				m.mu.Lock()
				m.got[string(r.Value)]++
				m.mu.Unlock()
				cl.MarkCommitRecords(r)
			})
			cl.AllowRebalance()
		}
	}()
	t.Cleanup(m.stop)
	return m
}

// stop leaves the group cleanly: what it consumed is committed first.
func (m *member) stop() {
	select {
	case <-m.done:
		return
	default:
	}
	m.cancel()
	<-m.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = m.cl.CommitMarkedOffsets(ctx)
	m.cl.Close()
}

func (m *member) partitions() map[int32]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int32]bool{}
	for p := range m.assigned {
		out[p] = true
	}
	return out
}

// waitAssigned waits until the members' assignments are disjoint, cover every partition
// and give each member its share.
func waitAssigned(t *testing.T, partitions int32, members ...*member) {
	t.Helper()
	harness.Eventually(t, 60*time.Second, func() error {
		owner := map[int32]string{}
		for _, m := range members {
			ps := m.partitions()
			if n := len(ps); n < int(partitions)/len(members) {
				return fmt.Errorf("%s has %d partitions", m.name, n)
			}
			for p := range ps {
				if o, ok := owner[p]; ok {
					return fmt.Errorf("partition %d assigned to %s and %s", p, o, m.name)
				}
				owner[p] = m.name
			}
		}
		if len(owner) != int(partitions) {
			return fmt.Errorf("%d of %d partitions assigned", len(owner), partitions)
		}
		return nil
	})
}

// TestConsumerGroupRebalancesAcrossThreeMembers runs a group of three kgo consumers on
// three agents: the six partitions are shared two by two; when a member leaves, the other
// two take its partitions, and when one joins again, it gets its share back. Every record
// produced along the way is consumed; the group's committed offsets (read back with kadm)
// reach every partition's end; the group is described and listed as Kafka tools expect.
func TestConsumerGroupRebalancesAcrossThreeMembers(t *testing.T) {
	c := newCluster(t, 3, nil)
	const topic, group, partitions = "events", "billing", 6
	c.createTopic(topic, partitions, nil)
	producer := c.client(kgo.DefaultProduceTopic(topic))
	produced := map[string]bool{}
	produce := func(round, n int) {
		var recs []*kgo.Record
		for i := range n {
			v := fmt.Sprintf("round-%d-%d", round, i)
			produced[v] = true
			recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(v)})
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	a := startMember(t, c, group, topic, "member-a")
	b := startMember(t, c, group, topic, "member-b")
	m3 := startMember(t, c, group, topic, "member-c")
	waitAssigned(t, partitions, a, b, m3)
	produce(1, 300)

	consumed := func(ms ...*member) map[string]int {
		out := map[string]int{}
		for _, m := range ms {
			m.mu.Lock()
			for v, n := range m.got {
				out[v] += n
			}
			m.mu.Unlock()
		}
		return out
	}
	all := []*member{a, b, m3}
	waitConsumed := func() {
		t.Helper()
		harness.Eventually(t, 60*time.Second, func() error {
			got := consumed(all...)
			for v := range produced {
				if got[v] == 0 {
					return fmt.Errorf("%d of %d records consumed; %s not yet", len(got), len(produced), v)
				}
			}
			return nil
		})
	}
	waitConsumed()

	m3.stop()
	waitAssigned(t, partitions, a, b)
	produce(2, 300)
	waitConsumed()

	d := startMember(t, c, group, topic, "member-d")
	all = append(all, d)
	waitAssigned(t, partitions, a, b, d)
	produce(3, 300)
	waitConsumed()

	// Records are consumed once, except those a member had consumed and not yet committed
	// when its partition moved (Kafka's at-least-once across a rebalance): only member-c
	// left, after committing in its revoke callback, so there are none.
	for v, n := range consumed(all...) {
		if !produced[v] {
			t.Fatalf("consumed %q, never produced", v)
		}
		if n != 1 {
			t.Errorf("%s consumed %d times", v, n)
		}
	}

	adm := kadm.NewClient(c.client())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, func() error {
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			return err
		}
		var lag []string
		ends.Each(func(o kadm.ListedOffset) {
			if got, ok := committed.Lookup(topic, o.Partition); !ok || got.At != o.Offset {
				lag = append(lag, fmt.Sprintf("%d: committed %d of %d", o.Partition, got.At, o.Offset))
			}
		})
		if lag != nil {
			return fmt.Errorf("offsets behind: %v", lag)
		}
		return nil
	})
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	dg := described[group]
	if dg.Err != nil || dg.State != "Stable" || len(dg.Members) != 3 || dg.Protocol == "" {
		t.Fatalf("group described as %+v", dg)
	}
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := listed[group]; !ok || len(listed) != 1 {
		t.Fatalf("groups listed: %v", listed.Groups())
	}
}

// TestGroupSurvivesItsCoordinatorsDeath kills the agent coordinating a group of two kgo
// consumers: the members find the new coordinator, rejoin, and consume what is produced
// after; nothing acked is missed (records consumed and not yet committed when the
// coordinator died may be consumed again, Kafka's at-least-once).
func TestGroupSurvivesItsCoordinatorsDeath(t *testing.T) {
	c := newCluster(t, 3, nil)
	const topic, group, partitions = "jobs", "workers", 4
	c.createTopic(topic, partitions, nil)
	a := startMember(t, c, group, topic, "worker-a")
	b := startMember(t, c, group, topic, "worker-b")
	waitAssigned(t, partitions, a, b)

	adm := kadm.NewClient(c.client())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	coords := adm.FindGroupCoordinators(ctx, group)
	coord, ok := coords[group]
	if !ok || coord.Err != nil {
		t.Fatalf("coordinator of %s: %+v", group, coords)
	}
	victim := -1
	for i, ag := range c.agents {
		if ag.KafkaAddr == fmt.Sprintf("%s:%d", coord.Host, coord.Port) {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("coordinator %s:%d is no agent", coord.Host, coord.Port)
	}
	if err := c.agents[victim].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s, the coordinator of %s", c.agents[victim].Config.Node, group)
	c.agents = append(c.agents[:victim:victim], c.agents[victim+1:]...)

	producer := c.client(kgo.DefaultProduceTopic(topic))
	var recs []*kgo.Record
	for i := range 200 {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("after-%d", i))})
	}
	if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 90*time.Second, func() error {
		missing := 0
		for _, r := range recs {
			a.mu.Lock()
			b.mu.Lock()
			if a.got[string(r.Value)]+b.got[string(r.Value)] == 0 {
				missing++
			}
			b.mu.Unlock()
			a.mu.Unlock()
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d records produced after the kill not consumed", missing, len(recs))
		}
		return nil
	})
	waitAssigned(t, partitions, a, b)
	// Members could go on fetching what they were assigned with no coordinator at all:
	// a live agent coordinates the group now, and the members' commits reach it, up to
	// the end of every partition.
	lister := c.client()
	harness.Eventually(t, 60*time.Second, func() error {
		coord := adm.FindGroupCoordinators(ctx, group)[group]
		if coord.Err != nil {
			return fmt.Errorf("coordinator of %s: %v", group, coord.Err)
		}
		if addr := fmt.Sprintf("%s:%d", coord.Host, coord.Port); !slices.ContainsFunc(c.agents, func(ag *harness.Agent) bool { return ag.KafkaAddr == addr }) {
			return fmt.Errorf("the coordinator of %s is %s, no live agent", group, addr)
		}
		ends, err := endOffsets(ctx, lister, topic)
		if err != nil {
			return err
		}
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			return fmt.Errorf("fetch the offsets of %s: %w", group, err)
		}
		for p, end := range ends {
			if o, ok := committed.Lookup(topic, p); !ok || o.Err != nil || o.At < end {
				return fmt.Errorf("%s committed %+v on partition %d, its end is %d", group, o, p, end)
			}
		}
		return nil
	})
}

// TestGroupCommitsFollowKafkasRules drives a group with raw requests and commits at each
// of its states, as Kafka's coordinator takes them: a member's commit while the group
// prepares a rebalance is taken (it commits what it processed before rejoining; refused,
// as it was, its successor processed it again), and refused as REBALANCE_IN_PROGRESS
// while the rebalance completes; a standalone commit (generation -1, no member) is
// refused as UNKNOWN_MEMBER_ID while the group has members (it was taken, overwriting
// theirs).
func TestGroupCommitsFollowKafkasRules(t *testing.T) {
	c := newCluster(t, 1, nil)
	const topic, group = "commits", "commit-rules"
	c.createTopic(topic, 1, nil)
	c.produceAtOnce(topic, 1, 10, 100, func(int) []kgo.Opt { return nil })
	// A client per member, as consumers have: a client sends its JoinGroups on one
	// connection, which the listener serves in order, and b's waits for a's.
	cl, other := c.client(), c.client()
	defer cl.Close()
	defer other.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	join := func(cl *kgo.Client, member string) *kmsg.JoinGroupResponse {
		resp, err := rawJoin(ctx, cl, group, member, 30000)
		if err != nil || resp.ErrorCode != 0 {
			t.Fatalf("join as %q: %v, %+v", member, err, resp)
		}
		return resp
	}
	sync := func(j *kmsg.JoinGroupResponse) {
		if err := rawSync(ctx, cl, group, j); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(member string, generation int32, offset int64) int16 {
		resp, err := commitRequest(group, member, generation, topic, offset).RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}

	a := join(cl, "")
	sync(a) // stable at a's generation
	if code := commit(a.MemberID, a.Generation, 3); code != 0 {
		t.Fatalf("commit of the only member, stable: code %d", code)
	}
	if code := commit("", -1, 9); code != kerr.UnknownMemberID.Code {
		t.Fatalf("standalone commit to a group with a member: code %d, want UNKNOWN_MEMBER_ID", code)
	}
	// b joins: the group prepares a rebalance, waiting for a to rejoin.
	joined := background(func() *kmsg.JoinGroupResponse { return join(other, "") })
	waitRebalance(ctx, t, cl, group, a)
	if code := commit(a.MemberID, a.Generation, 5); code != 0 {
		t.Fatalf("commit of a member while the group prepares a rebalance: code %d, want it taken", code)
	}
	a2 := join(cl, a.MemberID)
	b := await(t, joined)
	if a2.Generation != b.Generation || a2.Generation <= a.Generation {
		t.Fatalf("generations after the rebalance: %d and %d, from %d", a2.Generation, b.Generation, a.Generation)
	}
	// Joined, not synced: the rebalance completes.
	if code := commit(b.MemberID, b.Generation, 6); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("commit while the rebalance completes: code %d, want REBALANCE_IN_PROGRESS", code)
	}
	fetch := kmsg.NewPtrOffsetFetchRequest()
	fetch.Group = group
	ft := kmsg.NewOffsetFetchRequestTopic()
	ft.Topic, ft.Partitions = topic, []int32{0}
	fetch.Topics = append(fetch.Topics, ft)
	got, err := fetch.RequestWith(ctx, cl)
	if err != nil || got.Topics[0].Partitions[0].Offset != 5 {
		t.Fatalf("committed offset %v (%v), want 5: the member's commit while preparing, nothing after", got, err)
	}
}

// TestOffsetsWithEtcdAwayAreRetried: with etcd stopped, an offset commit and an offset
// fetch are answered COORDINATOR_NOT_AVAILABLE within the listener's bound, a code Kafka
// clients retry after finding their coordinator again. Before, they were answered
// UNKNOWN_SERVER_ERROR, on which the Java consumer's commitSync throws and its poll
// fails, and only when the client's own timeout ended the wait.
func TestOffsetsWithEtcdAwayAreRetried(t *testing.T) {
	c := newCluster(t, 1, nil)
	const topic, group = "away", "away-group"
	c.createTopic(topic, 1, nil)
	cl := c.client(kgo.RequestTimeoutOverhead(30 * time.Second))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The coordinator known before etcd goes: the requests go straight to it.
	if _, err := kadm.NewClient(cl).FetchOffsets(ctx, group); err != nil {
		t.Fatal(err)
	}
	if err := etcd.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := etcd.Restart(context.Background()); err != nil {
			t.Errorf("restart etcd: %v", err)
		}
	})
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Group, commit.Generation = group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rt.Partitions = append(rt.Partitions, rp)
	commit.Topics = append(commit.Topics, rt)
	start := time.Now()
	resp, err := commit.RequestWith(ctx, cl)
	if err != nil || resp.Topics[0].Partitions[0].ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("offset commit with etcd away: %v, %+v; want COORDINATOR_NOT_AVAILABLE", err, resp)
	}
	fetch := kmsg.NewPtrOffsetFetchRequest()
	fetch.Group = group
	got, err := fetch.RequestWith(ctx, cl)
	if err != nil || got.ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("offset fetch with etcd away: %v, %+v; want COORDINATOR_NOT_AVAILABLE", err, got)
	}
	// What lists and describes groups reads etcd too (the groups with offsets): over a
	// raw connection, as a client's retries would hide the answer.
	r := dialRaw(t, c.agents[0].KafkaAddr)
	if lg := r.request(kmsg.NewPtrListGroupsRequest(), 2).(*kmsg.ListGroupsResponse); lg.ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("list groups with etcd away: %+v; want COORDINATOR_NOT_AVAILABLE", lg)
	}
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Groups = []string{group}
	if d := r.request(dg, 3).(*kmsg.DescribeGroupsResponse); len(d.Groups) != 1 || d.Groups[0].ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("describe a group with etcd away: %+v; want COORDINATOR_NOT_AVAILABLE", d)
	}
	t.Logf("all four answered within %s", time.Since(start).Round(time.Millisecond))
}

// joinRequest is a JoinGroup of a consumer to group as member ("": a new one), with a
// session timeout of 30 s and the rebalance timeout given.
func joinRequest(group, member string, rebalanceMs int32) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group, req.MemberID, req.ProtocolType = group, member, "consumer"
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 30000, rebalanceMs
	proto := kmsg.NewJoinGroupRequestProtocol()
	proto.Name, proto.Metadata = "range", []byte{0}
	req.Protocols = append(req.Protocols, proto)
	return req
}

// rawJoin sends joinRequest through cl, and again with the member id it is given when
// it is told to join with one (MEMBER_ID_REQUIRED, KIP-394), as clients do.
func rawJoin(ctx context.Context, cl *kgo.Client, group, member string, rebalanceMs int32) (*kmsg.JoinGroupResponse, error) {
	req := joinRequest(group, member, rebalanceMs)
	resp, err := req.RequestWith(ctx, cl)
	if err == nil && resp.ErrorCode == kerr.MemberIDRequired.Code {
		req.MemberID = resp.MemberID
		resp, err = req.RequestWith(ctx, cl)
	}
	return resp, err
}

// join sends req at version over r, and again with the member id it is given when it is
// told to join with one (MEMBER_ID_REQUIRED, KIP-394), as clients do.
func (r *rawConn) join(req *kmsg.JoinGroupRequest, version int16) *kmsg.JoinGroupResponse {
	r.t.Helper()
	resp := r.request(req, version).(*kmsg.JoinGroupResponse)
	if resp.ErrorCode == kerr.MemberIDRequired.Code {
		req.MemberID = resp.MemberID
		resp = r.request(req, version).(*kmsg.JoinGroupResponse)
	}
	return resp
}

// commitRequest is an OffsetCommit of offset on partition 0 of topic, for group's member
// at generation ("" and -1: a standalone consumer's).
func commitRequest(group, member string, generation int32, topic string, offset int64) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.MemberID, req.Generation = group, member, generation
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// waitRebalance waits until the group prepares a rebalance: the heartbeat of j's member
// says so.
func waitRebalance(ctx context.Context, t *testing.T, cl *kgo.Client, group string, j *kmsg.JoinGroupResponse) {
	t.Helper()
	harness.Eventually(t, 10*time.Second, func() error {
		req := kmsg.NewPtrHeartbeatRequest()
		req.Group, req.MemberID, req.Generation = group, j.MemberID, j.Generation
		if resp, err := req.RequestWith(ctx, cl); err != nil || resp.ErrorCode != kerr.RebalanceInProgress.Code {
			return fmt.Errorf("heartbeat of %s: %v, %+v; want the rebalance", j.MemberID, err, resp)
		}
		return nil
	})
}

// joinAlone joins group as a new member through cl, the group's only one, and syncs: the
// group is stable with it.
func joinAlone(ctx context.Context, t *testing.T, cl *kgo.Client, group string, rebalanceMs int32) *kmsg.JoinGroupResponse {
	t.Helper()
	a, err := rawJoin(ctx, cl, group, "", rebalanceMs)
	if err != nil || a.ErrorCode != 0 {
		t.Fatalf("first join: %v, %+v", err, a)
	}
	if err := rawSync(ctx, cl, group, a); err != nil {
		t.Fatal(err)
	}
	return a
}

// rawSync sends the SyncGroup of j's member, as the leader when it is: nothing to assign
// but a place for every member.
func rawSync(ctx context.Context, cl *kgo.Client, group string, j *kmsg.JoinGroupResponse) error {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Group, req.MemberID, req.Generation = group, j.MemberID, j.Generation
	for _, m := range j.Members {
		a := kmsg.NewSyncGroupRequestGroupAssignment()
		a.MemberID, a.MemberAssignment = m.MemberID, []byte{0}
		req.GroupAssignment = append(req.GroupAssignment, a)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err == nil && resp.ErrorCode != 0 {
		err = fmt.Errorf("sync of %s: code %d", j.MemberID, resp.ErrorCode)
	}
	return err
}

// TestNewMemberWithAShortRebalanceTimeoutJoinsOnce: a consumer joining with a rebalance
// timeout shorter than the group's gets its answer when the join phase ends, the other
// members rejoined. Before, its own wait ran out first: it was told to try again with no
// member id, and rejoined as a second new member, while the first stayed in the group,
// counted as joined, and was assigned partitions nobody read.
func TestNewMemberWithAShortRebalanceTimeoutJoinsOnce(t *testing.T) {
	c := newCluster(t, 1, nil)
	const group = "short-rebalance"
	clA, clN := c.client(kgo.RequestTimeoutOverhead(30*time.Second)), c.client(kgo.RequestTimeoutOverhead(30*time.Second))
	defer clA.Close()
	defer clN.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := joinAlone(ctx, t, clA, group, 20000)
	joined := make(chan *kmsg.JoinGroupResponse, 1)
	go func() {
		n, err := rawJoin(ctx, clN, group, "", 2000)
		if err != nil {
			n = nil
		}
		joined <- n
	}()
	// The first member rejoins once the new one's own 2 s are well past, within the
	// group's 20: the new member must not be answered before.
	var n *kmsg.JoinGroupResponse
	select {
	case n = <-joined:
		t.Fatalf("the new member was answered before the join phase ended: %+v", n)
	case <-time.After(4 * time.Second):
	}
	a2, err := rawJoin(ctx, clA, group, a.MemberID, 20000)
	if err != nil || a2.ErrorCode != 0 {
		t.Fatalf("rejoin: %v, %+v", err, a2)
	}
	n = <-joined
	if n == nil || n.ErrorCode != 0 || n.MemberID == "" || n.Generation != a2.Generation {
		t.Fatalf("the new member's join: %+v; want it in generation %d", n, a2.Generation)
	}
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Groups = []string{group}
	d, err := dg.RequestWith(ctx, clA)
	if err != nil || len(d.Groups) != 1 || len(d.Groups[0].Members) != 2 {
		t.Fatalf("describe: %v, %+v; want the two members", err, d)
	}
}

// TestANewMemberThatHangsUpIsNoMember: a new member is given its member id before it
// joins (MEMBER_ID_REQUIRED, KIP-394), and one that hangs up while its join waits for the
// group's join phase is no member: the phase ends once the others rejoined, without it.
// Before, a new member was in the group from its first join, and one that hung up stayed,
// counted as joined: it was given partitions nobody read until its session expired (a
// client whose own timeout ran out first rejoined as a second member beside it).
func TestANewMemberThatHangsUpIsNoMember(t *testing.T) {
	c := newCluster(t, 1, nil)
	const group = "hung-up"
	clA, clN := c.client(kgo.RequestTimeoutOverhead(30*time.Second)), c.client(kgo.RequestTimeoutOverhead(30*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := joinAlone(ctx, t, clA, group, 20000)

	x := dialRaw(t, c.agents[0].KafkaAddr)
	// v5: the raw connection writes no flexible versions' header; KIP-394 is v4 on.
	first := x.request(joinRequest(group, "", 20000), 5).(*kmsg.JoinGroupResponse)
	if first.ErrorCode != kerr.MemberIDRequired.Code || first.MemberID == "" {
		t.Fatalf("a new member's first join: %+v, want MEMBER_ID_REQUIRED with its id", first)
	}
	again := joinRequest(group, first.MemberID, 20000)
	again.SetVersion(5)
	x.send(int16(kmsg.JoinGroup), 5, again.AppendTo(nil))
	// The group prepares a rebalance for it: a's heartbeat says so. Then x hangs up.
	waitRebalance(ctx, t, clA, group, a)
	_ = x.c.Close()

	joined := background(func() *kmsg.JoinGroupResponse {
		n, err := rawJoin(ctx, clN, group, "", 20000)
		if err != nil {
			t.Errorf("the second new member's join: %v", err)
		}
		return n
	})
	// a rejoins once the second new member's join waits, the one that hung up gone.
	harness.Eventually(t, 10*time.Second, func() error {
		dg := kmsg.NewPtrDescribeGroupsRequest()
		dg.Groups = []string{group}
		d, err := dg.RequestWith(ctx, clA)
		if err != nil || len(d.Groups) != 1 {
			return fmt.Errorf("describe: %v, %+v", err, d)
		}
		var ids []string
		for _, m := range d.Groups[0].Members {
			ids = append(ids, m.MemberID)
		}
		if len(ids) != 2 || slices.Contains(ids, first.MemberID) {
			return fmt.Errorf("members %v; want a and the second new member", ids)
		}
		return nil
	})
	a2, err := rawJoin(ctx, clA, group, a.MemberID, 20000)
	if err != nil || a2.ErrorCode != 0 {
		t.Fatalf("rejoin: %v, %+v", err, a2)
	}
	n := await(t, joined)
	if n == nil || n.ErrorCode != 0 || n.Generation != a2.Generation {
		t.Fatalf("the second new member's join: %+v; want it in generation %d", n, a2.Generation)
	}
	members := map[string]bool{}
	for _, m := range a2.Members {
		members[m.MemberID] = true
	}
	if len(members) != 2 || !members[a.MemberID] || !members[n.MemberID] {
		t.Fatalf("the leader was given members %v; want %s and %s, not the one that hung up (%s)", members, a.MemberID, n.MemberID, first.MemberID)
	}
}

// TestAMemberThatHangsUpMidRebalanceLeaves: a member of the group's generation that
// hangs up while its JoinGroup waits for the others leaves at once: the rebalance ends
// when the others have rejoined, not when the group's rebalance timeout has passed. Before,
// only a member new to the group left so; one already in a generation held every other
// member in its JoinGroup until the timeout (here 20 s; 5 minutes by the Java client's
// default) or its session's end, and the group consumed nothing meanwhile.
func TestAMemberThatHangsUpMidRebalanceLeaves(t *testing.T) {
	c := newCluster(t, 1, nil)
	const group = "gone-mid-rebalance"
	clA := c.client(kgo.RequestTimeoutOverhead(30 * time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := joinAlone(ctx, t, clA, group, 20000)

	// b joins over a connection of its own; a rejoins; both are in the next generation.
	x := dialRaw(t, c.agents[0].KafkaAddr)
	joined := background(func() *kmsg.JoinGroupResponse { return x.join(joinRequest(group, "", 20000), 5) })
	waitRebalance(ctx, t, clA, group, a)
	a2, err := rawJoin(ctx, clA, group, a.MemberID, 20000)
	if err != nil || a2.ErrorCode != 0 {
		t.Fatalf("a's rejoin: %v, %+v", err, a2)
	}
	b := await(t, joined)
	if b.ErrorCode != 0 || b.Generation != a2.Generation {
		t.Fatalf("b's join: %+v, want generation %d", b, a2.Generation)
	}
	synced := background(func() int16 {
		req := kmsg.NewPtrSyncGroupRequest()
		req.Group, req.MemberID, req.Generation = group, b.MemberID, b.Generation
		return x.request(req, 3).(*kmsg.SyncGroupResponse).ErrorCode
	})
	if err := rawSync(ctx, clA, group, a2); err != nil {
		t.Fatal(err)
	}
	if code := await(t, synced); code != 0 {
		t.Fatalf("b's sync: code %d", code)
	}

	// A rebalance: b rejoins (the rebalance its join starts shows), a rejoins, and b
	// hangs up while its join waits.
	again := joinRequest(group, b.MemberID, 20000)
	again.SetVersion(5)
	x.send(int16(kmsg.JoinGroup), 5, again.AppendTo(nil))
	harness.Eventually(t, 10*time.Second, func() error {
		dg := kmsg.NewPtrDescribeGroupsRequest()
		dg.Groups = []string{group}
		d, err := dg.RequestWith(ctx, clA)
		if err != nil || len(d.Groups) != 1 || d.Groups[0].State != "PreparingRebalance" {
			return fmt.Errorf("describe: %v, %+v; want the rebalance b's rejoin starts", err, d)
		}
		return nil
	})
	_ = x.c.Close()
	// b leaves once its connection closes (before, it stayed, and the rebalance waited
	// for it until the group's 20 s had passed); a's rejoin then ends the rebalance.
	harness.Eventually(t, 10*time.Second, func() error {
		dg := kmsg.NewPtrDescribeGroupsRequest()
		dg.Groups = []string{group}
		d, err := dg.RequestWith(ctx, clA)
		if err != nil || len(d.Groups) != 1 || len(d.Groups[0].Members) != 1 || d.Groups[0].Members[0].MemberID != a.MemberID {
			return fmt.Errorf("describe: %v, %+v; want a alone once b hung up", err, d)
		}
		return nil
	})
	a3, err := rawJoin(ctx, clA, group, a.MemberID, 20000)
	if err != nil || a3.ErrorCode != 0 || a3.Generation <= b.Generation || len(a3.Members) != 1 {
		t.Fatalf("a's rejoin once b hung up: %v, %+v; want the next generation, of a alone", err, a3)
	}
}

// TestAGroupPastItsSizeIsRefused: past --kafka-max-group-members, a new member's join is
// refused GROUP_MAX_SIZE_REACHED, as Kafka's past group.max.size, and the group goes on
// as it was.
func TestAGroupPastItsSizeIsRefused(t *testing.T) {
	c := newCluster(t, 1, func(int) []string { return []string{"--kafka-max-group-members", "1"} })
	const group = "full"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clA, clB := c.client(), c.client()
	a := joinAlone(ctx, t, clA, group, 10000)
	if b, err := rawJoin(ctx, clB, group, "", 10000); err != nil || b.ErrorCode != kerr.GroupMaxSizeReached.Code {
		t.Fatalf("a join past the group's size: %v, %+v; want GROUP_MAX_SIZE_REACHED", err, b)
	}
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group, req.MemberID, req.Generation = group, a.MemberID, a.Generation
	if resp, err := req.RequestWith(ctx, clA); err != nil || resp.ErrorCode != 0 {
		t.Fatalf("the member's heartbeat after the refused join: %v, %+v; want the group as it was", err, resp)
	}
}

// TestRestartedStaticMemberGetsItsPartitionsBack: a kgo consumer with a group.instance.id
// (static membership, KIP-345) that restarts within its session timeout takes its place
// back under a new member id and gets its partitions again within seconds, the other
// member keeping its partitions throughout. Before, the restarted instance joined as a
// new member, and the group's join phase waited for the old one, which never rejoined,
// until its session timed out (30 s here). Whether the group rebalanced is
// TestStaticMemberRejoinsWithoutARebalance's to show: which member kgo's group makes its
// leader (restarted, it rebalances) depends on the order they joined in.
func TestRestartedStaticMemberGetsItsPartitionsBack(t *testing.T) {
	c := newCluster(t, 1, nil)
	const topic, group, partitions = "static", "static-group", 4
	c.createTopic(topic, partitions, nil)
	static := func(id string) []kgo.Opt {
		return []kgo.Opt{kgo.InstanceID(id), kgo.SessionTimeout(30 * time.Second), kgo.RebalanceTimeout(60 * time.Second)}
	}
	a := startMember(t, c, group, topic, "static-a", static("a")...)
	b := startMember(t, c, group, topic, "static-b", static("b")...)
	waitAssigned(t, partitions, a, b)
	had, bHad := a.partitions(), b.partitions()
	b.mu.Lock()
	revokes := b.revokes
	b.mu.Unlock()
	a.stop() // a static member does not leave the group when it closes
	restarted := time.Now()
	a2 := startMember(t, c, group, topic, "static-a-restarted", static("a")...)
	harness.Eventually(t, 12*time.Second, func() error {
		if got := a2.partitions(); !maps.Equal(got, had) {
			return fmt.Errorf("the restarted instance has %v, had %v", got, had)
		}
		return nil
	})
	took := time.Since(restarted)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.revokes != revokes || !maps.Equal(b.assigned, bHad) {
		t.Fatalf("the other member's partitions moved: %v, had %v; %d revoked since", b.assigned, bHad, b.revokes-revokes)
	}
	t.Logf("the restarted static member had its %d partitions back %s after its restart", len(had), took.Round(10*time.Millisecond))
}

// TestReplacedStaticMemberIsFenced: once a static member's instance has rejoined with no
// member id (it restarted), the old member id's heartbeats, commits and leave are
// FENCED_INSTANCE_ID, as Kafka answers a zombie of a restarted instance, and the new one
// goes on.
func TestReplacedStaticMemberIsFenced(t *testing.T) {
	c := newCluster(t, 1, nil)
	const topic, group = "fenced", "fenced-group"
	c.createTopic(topic, 1, nil)
	r := dialRaw(t, c.agents[0].KafkaAddr)
	inst := "instance-1"
	join := func(member string) *kmsg.JoinGroupResponse {
		req := joinRequest(group, member, 5000)
		req.InstanceID = &inst
		return r.request(req, 5).(*kmsg.JoinGroupResponse)
	}
	heartbeat := func(j *kmsg.JoinGroupResponse) int16 {
		hb := kmsg.NewPtrHeartbeatRequest()
		hb.Group, hb.MemberID, hb.Generation, hb.InstanceID = group, j.MemberID, j.Generation, &inst
		return r.request(hb, 3).(*kmsg.HeartbeatResponse).ErrorCode
	}
	old := join("")
	if old.ErrorCode != 0 {
		t.Fatalf("first join: %+v", old)
	}
	restarted := join("")
	if restarted.ErrorCode != 0 || restarted.MemberID == old.MemberID {
		t.Fatalf("rejoin of the instance with no member id: %+v", restarted)
	}
	if code := heartbeat(old); code != kerr.FencedInstanceID.Code {
		t.Fatalf("heartbeat of the replaced member: code %d, want FENCED_INSTANCE_ID", code)
	}
	commit := commitRequest(group, old.MemberID, restarted.Generation, topic, 0)
	commit.InstanceID = &inst
	if code := r.request(commit, 7).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode; code != kerr.FencedInstanceID.Code {
		t.Fatalf("commit of the replaced member: code %d, want FENCED_INSTANCE_ID", code)
	}
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Group = group
	leave.Members = []kmsg.LeaveGroupRequestMember{{MemberID: old.MemberID, InstanceID: &inst}}
	if got := r.request(leave, 3).(*kmsg.LeaveGroupResponse); got.Members[0].ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("leave of the replaced member: %+v, want FENCED_INSTANCE_ID", got)
	}
	if code := heartbeat(restarted); code != 0 && code != kerr.RebalanceInProgress.Code {
		t.Fatalf("heartbeat of the instance's new member: code %d", code)
	}
	// The instance leaves by its id alone.
	leave.Members = []kmsg.LeaveGroupRequestMember{{InstanceID: &inst}}
	if got := r.request(leave, 3).(*kmsg.LeaveGroupResponse); got.ErrorCode != 0 || got.Members[0].ErrorCode != 0 {
		t.Fatalf("leave by instance id: %+v", got)
	}
	if code := heartbeat(restarted); code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat after the instance left: code %d, want UNKNOWN_MEMBER_ID", code)
	}
	// A member's instance id is the one it joined with: a rejoin under another is
	// refused, and the instance's place is its own after the member leaves (this
	// sequence crashed the agent in review: the instance still named the member gone).
	again := join("")
	other := "instance-2"
	req := joinRequest(group, again.MemberID, 5000)
	req.InstanceID = &other
	if got := r.request(req, 5).(*kmsg.JoinGroupResponse); got.ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("rejoin under another instance id: %+v, want FENCED_INSTANCE_ID", got)
	}
	leave.Members = []kmsg.LeaveGroupRequestMember{{MemberID: again.MemberID}}
	if got := r.request(leave, 3).(*kmsg.LeaveGroupResponse); got.Members[0].ErrorCode != 0 {
		t.Fatalf("leave by member id: %+v", got)
	}
	if last := join(""); last.ErrorCode != 0 {
		t.Fatalf("join of the instance once its member left: %+v", last)
	}
}

// TestStaticMemberRejoinsWithoutARebalance drives a group of a dynamic leader and a
// static member with raw requests: the static member restarting (a join with no member
// id, its metadata changed, as a client stamps its generation in it) is answered at once
// with the group's current generation and a new member id, syncs to its assignment as
// it was, and the leader is not asked to rejoin; the old member id is fenced.
func TestStaticMemberRejoinsWithoutARebalance(t *testing.T) {
	c := newCluster(t, 1, nil)
	const group = "static-raw"
	ra, rb := dialRaw(t, c.agents[0].KafkaAddr), dialRaw(t, c.agents[0].KafkaAddr)
	inst := "b-instance"
	join := func(r *rawConn, member string, instance *string, metadata byte) *kmsg.JoinGroupResponse {
		req := joinRequest(group, member, 5000)
		req.InstanceID, req.Protocols[0].Metadata = instance, []byte{metadata}
		return r.join(req, 5)
	}
	sync := func(r *rawConn, j *kmsg.JoinGroupResponse, instance *string, assign map[string]string) *kmsg.SyncGroupResponse {
		req := kmsg.NewPtrSyncGroupRequest()
		req.Group, req.MemberID, req.Generation, req.InstanceID = group, j.MemberID, j.Generation, instance
		for id, a := range assign {
			ga := kmsg.NewSyncGroupRequestGroupAssignment()
			ga.MemberID, ga.MemberAssignment = id, []byte(a)
			req.GroupAssignment = append(req.GroupAssignment, ga)
		}
		return r.request(req, 3).(*kmsg.SyncGroupResponse)
	}
	heartbeat := func(r *rawConn, j *kmsg.JoinGroupResponse, instance *string) int16 {
		req := kmsg.NewPtrHeartbeatRequest()
		req.Group, req.MemberID, req.Generation, req.InstanceID = group, j.MemberID, j.Generation, instance
		return r.request(req, 3).(*kmsg.HeartbeatResponse).ErrorCode
	}

	a := join(ra, "", nil, 1) // alone: the leader
	if a.ErrorCode != 0 || a.LeaderID != a.MemberID || sync(ra, a, nil, map[string]string{a.MemberID: "A"}).ErrorCode != 0 {
		t.Fatalf("first member: %+v", a)
	}
	joined := background(func() *kmsg.JoinGroupResponse { return join(rb, "", &inst, 1) })
	harness.Eventually(t, 10*time.Second, func() error {
		if code := heartbeat(ra, a, nil); code != kerr.RebalanceInProgress.Code {
			return fmt.Errorf("leader's heartbeat: code %d, want the rebalance the static member's join starts", code)
		}
		return nil
	})
	a2 := join(ra, a.MemberID, nil, 1)
	b := await(t, joined)
	if a2.ErrorCode != 0 || b.ErrorCode != 0 || a2.LeaderID != a.MemberID || b.Generation != a2.Generation {
		t.Fatalf("rebalance: leader %+v, static member %+v", a2, b)
	}
	synced := background(func() *kmsg.SyncGroupResponse { return sync(rb, b, &inst, nil) })
	if got := sync(ra, a2, nil, map[string]string{a2.MemberID: "A", b.MemberID: "B"}); got.ErrorCode != 0 || string(got.MemberAssignment) != "A" {
		t.Fatalf("leader's sync: %+v", got)
	}
	if got := await(t, synced); got.ErrorCode != 0 || string(got.MemberAssignment) != "B" {
		t.Fatalf("static member's sync: %+v", got)
	}

	// The static member restarts.
	rb2 := dialRaw(t, c.agents[0].KafkaAddr)
	b2 := join(rb2, "", &inst, 2)
	if b2.ErrorCode != 0 || b2.Generation != a2.Generation || b2.MemberID == b.MemberID || b2.LeaderID != a2.MemberID {
		t.Fatalf("restarted static member's join: %+v; want generation %d, a new member id, leader %s", b2, a2.Generation, a2.MemberID)
	}
	if got := sync(rb2, b2, &inst, nil); got.ErrorCode != 0 || string(got.MemberAssignment) != "B" {
		t.Fatalf("restarted static member's sync: %+v, want its assignment B", got)
	}
	if code := heartbeat(ra, a2, nil); code != 0 {
		t.Fatalf("leader's heartbeat after the static member's restart: code %d, want no rebalance", code)
	}
	if code := heartbeat(rb, b, &inst); code != kerr.FencedInstanceID.Code {
		t.Fatalf("old incarnation's heartbeat: code %d, want FENCED_INSTANCE_ID", code)
	}
}

// background runs f, which may end its test (Fatal), in a goroutine of its own and
// returns where its result comes. A Fatal there ends only that goroutine: the channel then
// closes without a result, and await ends the test instead of waiting for ever.
func background[T any](f func() T) <-chan T {
	out := make(chan T, 1)
	go func() {
		defer close(out)
		out <- f()
	}()
	return out
}

// await returns what a background function returned, or ends the test if it ended
// without returning (its Fatal reported why) or took more than a minute.
func await[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.FailNow()
		}
		return v
	case <-time.After(time.Minute):
		t.Fatal("no answer in a minute")
	}
	panic("unreachable")
}
