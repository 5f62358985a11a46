package cluster_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/tests/harness"
)

func dial(t *testing.T, addr string) (pb.StreamHouseClient, *grpc.ClientConn) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pb.NewStreamHouseClient(conn), conn
}

func TestGatewayEndToEnd(t *testing.T) {
	tc := newCluster(t, 3, 0)
	ctx := context.Background()
	admin, conn := dial(t, tc.agents[0].GRPCAddr)
	producer, _ := dial(t, tc.agents[1].GRPCAddr)
	consumer, _ := dial(t, tc.agents[2].GRPCAddr)

	// Health and reflection, as grpcurl and load balancers use them.
	if h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
	rs, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rr, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var services []string
	for _, s := range rr.GetListServicesResponse().GetService() {
		services = append(services, s.Name)
	}
	if !slices.Contains(services, "streamhouse.v1.StreamHouse") {
		t.Fatalf("reflection lists %v", services)
	}

	if _, err := admin.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "events", Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	tc.waitOwned(60*time.Second, map[string]int32{"events": 4})

	// 10k keyed records with headers and timestamps, in batches of 500.
	type sent struct {
		rec *pb.Record
		ack *pb.RecordAck
	}
	var all []sent
	keyPartition := map[string]int32{}
	for b := range 20 {
		req := &pb.ProduceRequest{Topic: "events"}
		for i := range 500 {
			n := b*500 + i
			req.Records = append(req.Records, &pb.Record{
				Key: fmt.Appendf(nil, "user-%d", n%137), Value: fmt.Appendf(nil, "event-%d", n),
				Headers:     []*pb.Header{{Key: "n", Value: fmt.Appendf(nil, "%d", n)}, {Key: "null"}},
				TimestampMs: 1_764_000_000_000 + int64(n),
			})
		}
		resp, err := producer.Produce(ctx, req)
		if err != nil || len(resp.Acks) != len(req.Records) {
			t.Fatalf("produce batch %d: %v", b, err)
		}
		for i, a := range resp.Acks {
			r := req.Records[i]
			if want := gateway.PartitionForKey(r.Key, 4); a.Partition != want {
				t.Fatalf("key %s went to partition %d, murmur2 says %d", r.Key, a.Partition, want)
			}
			if p, seen := keyPartition[string(r.Key)]; seen && p != a.Partition {
				t.Fatalf("key %s on partitions %d and %d", r.Key, p, a.Partition)
			}
			keyPartition[string(r.Key)] = a.Partition
			all = append(all, sent{r, a})
		}
	}
	// Per partition, in offset order, with keys, headers and timestamps.
	for p := range int32(4) {
		var want []*pb.Record
		for _, s := range all {
			if s.ack.Partition == p {
				want = append(want, s.rec)
			}
		}
		var got []*pb.Record
		for int64(len(got)) < int64(len(want)) {
			resp, err := consumer.Fetch(ctx, &pb.FetchRequest{Topic: "events", Partition: p, Offset: int64(len(got))})
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, resp.Records...)
		}
		for i, r := range got {
			w := want[i]
			if r.Offset != int64(i) || r.Partition != p || !proto.Equal(&pb.Record{Key: r.Key, Value: r.Value, Headers: r.Headers, TimestampMs: r.TimestampMs}, w) {
				t.Fatalf("partition %d offset %d: got %v, want %v", p, i, r, w)
			}
		}
	}

	// A consumer group commits, "restarts", and resumes right after its commit.
	first, err := consumer.Fetch(ctx, &pb.FetchRequest{Topic: "events", Partition: 1, Offset: 0, MaxBytes: 300})
	if err != nil || len(first.Records) == 0 {
		t.Fatalf("fetch: %v", err)
	}
	next := first.Records[len(first.Records)-1].Offset + 1
	if _, err := consumer.CommitOffsets(ctx, &pb.CommitOffsetsRequest{Group: "billing", Offsets: []*pb.PartitionOffset{{Topic: "events", Partition: 1, Offset: next}}}); err != nil {
		t.Fatal(err)
	}
	restarted, _ := dial(t, tc.agents[0].GRPCAddr)
	offs, err := restarted.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: "billing"})
	if err != nil || len(offs.Offsets) != 1 || offs.Offsets[0].Offset != next {
		t.Fatalf("fetch offsets: %v %v", offs, err)
	}
	resumed, err := restarted.Fetch(ctx, &pb.FetchRequest{Topic: "events", Partition: 1, Offset: offs.Offsets[0].Offset, MaxBytes: 1})
	if err != nil || len(resumed.Records) != 1 || resumed.Records[0].Offset != next {
		t.Fatalf("resume: %v %v", resumed, err)
	}
	if groups, err := admin.ListGroups(ctx, &pb.ListGroupsRequest{}); err != nil || !slices.Equal(groups.Groups, []string{"billing"}) {
		t.Fatalf("groups: %v %v", groups, err)
	}
	st, err := admin.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
	if err != nil || len(st.Members) != 3 || st.Partitions != 4 || st.Unowned != 0 {
		t.Fatalf("cluster status: %v %v", st, err)
	}
	d, err := admin.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "events"})
	if err != nil || len(d.Partitions) != 4 || d.Partitions[1].Owner == "" || d.Partitions[1].Epoch == 0 {
		t.Fatalf("describe: %v %v", d, err)
	}

	// Each agent's admin port: alive, ready, and its metrics add up to what was acked.
	records, owned, produces := 0.0, 0.0, 0.0
	for _, a := range tc.agents {
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, body := httpGet(t, "http://"+a.AdminAddr+path); code != 200 {
				t.Fatalf("%s%s: %d %s", a.Config.Node, path, code, body)
			}
		}
		_, body := httpGet(t, "http://"+a.AdminAddr+"/metrics")
		records += harness.MetricSum(body, `streamhouse_produce_records_total{topic="events"}`)
		owned += harness.MetricSum(body, `streamhouse_partitions_owned{`)
		produces += harness.MetricSum(body, `streamhouse_requests_total{code="OK",method="Produce"}`)
	}
	if produces != 20 {
		t.Fatalf("metrics count %v successful Produce calls, the test made 20", produces)
	}
	if records != 10000 || owned != 4 {
		t.Fatalf("metrics: %v records acked, %v partitions owned; want 10000 and 4", records, owned)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestGatewayRefusesBadInputAndWritesNothing(t *testing.T) {
	tc := newCluster(t, 1, 0)
	ctx := context.Background()
	c, _ := dial(t, tc.agents[0].GRPCAddr)
	if _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	tc.waitOwned(60*time.Second, map[string]int32{"t": 2})
	if _, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "t", Records: []*pb.Record{{Value: []byte("ok")}}}); err != nil {
		t.Fatal(err)
	}
	store, err := objstore.OpenS3(ctx, objstore.S3Options{Bucket: tc.bucket, Endpoint: minio.Endpoint, AccessKey: minio.AccessKey, SecretKey: minio.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func() (int, []int64) {
		objs, err := store.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		var hwms []int64
		for p := range int32(2) {
			h, err := tc.coord.HWM(ctx, "t", p)
			if err != nil {
				t.Fatal(err)
			}
			hwms = append(hwms, h)
		}
		return len(objs), hwms
	}
	objsBefore, hwmBefore := snapshot()
	two := int32(2)
	big := make([]byte, (1<<20)+1)
	for name, tcase := range map[string]struct {
		call func() error
		want codes.Code
	}{
		"unknown topic": {func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "nope", Records: []*pb.Record{{}}})
			return err
		}, codes.NotFound},
		"illegal topic name": {func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "a/b", Records: []*pb.Record{{}}})
			return err
		}, codes.InvalidArgument},
		"partition range": {func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "t", Partition: &two, Records: []*pb.Record{{}}})
			return err
		}, codes.NotFound},
		"empty produce": {func() error { _, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "t"}); return err }, codes.InvalidArgument},
		"oversized record": {func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "t", Records: []*pb.Record{{Value: big}}})
			return err
		}, codes.InvalidArgument},
		"oversized batch": {func() error {
			req := &pb.ProduceRequest{Topic: "t"}
			for range 17 {
				req.Records = append(req.Records, &pb.Record{Value: make([]byte, 1<<20-16)})
			}
			_, err := c.Produce(ctx, req)
			return err
		}, codes.InvalidArgument},
		"negative offset": {func() error { _, err := c.Fetch(ctx, &pb.FetchRequest{Topic: "t", Offset: -1}); return err }, codes.InvalidArgument},
		"future offset": {func() error {
			_, err := c.Fetch(ctx, &pb.FetchRequest{Topic: "t", Partition: 0, Offset: 1000})
			return err
		}, codes.OutOfRange},
		"fetch bad partition": {func() error { _, err := c.Fetch(ctx, &pb.FetchRequest{Topic: "t", Partition: 9}); return err }, codes.NotFound},
		"duplicate topic": {func() error {
			_, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "t", Partitions: 1})
			return err
		}, codes.AlreadyExists},
		"zero partitions": {func() error {
			_, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "z", Partitions: 0})
			return err
		}, codes.InvalidArgument},
		"commit past hwm": {func() error {
			_, err := c.CommitOffsets(ctx, &pb.CommitOffsetsRequest{Group: "g", Offsets: []*pb.PartitionOffset{{Topic: "t", Offset: 99}}})
			return err
		}, codes.OutOfRange},
		"describe unknown": {func() error { _, err := c.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "nope"}); return err }, codes.NotFound},
	} {
		err := tcase.call()
		if st, _ := status.FromError(err); st.Code() != tcase.want || st.Message() == "" {
			t.Errorf("%s: %v, want %s with a message", name, err, tcase.want)
		}
	}
	objsAfter, hwmAfter := snapshot()
	if objsAfter != objsBefore || !slices.Equal(hwmAfter, hwmBefore) {
		t.Fatalf("refused requests wrote: objects %d -> %d, hwm %v -> %v", objsBefore, objsAfter, hwmBefore, hwmAfter)
	}
	if _, err := tc.coord.Topic(ctx, "z"); err == nil {
		t.Fatal("a refused create left a topic")
	}
	if groups, _ := tc.coord.Groups(ctx); len(groups) != 0 {
		t.Fatalf("a refused commit left groups %v", groups)
	}
}

func TestGatewayStreams(t *testing.T) {
	tc := newCluster(t, 1, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, _ := dial(t, tc.agents[0].GRPCAddr)
	if _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "s", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	tc.waitOwned(60*time.Second, map[string]int32{"s": 1})
	sub, err := c.Subscribe(ctx, &pb.SubscribeRequest{Topic: "s", Partition: 0, Offset: 0})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := c.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := ps.Send(&pb.ProduceRequest{Topic: "s", Records: []*pb.Record{{Value: fmt.Appendf(nil, "v%d", i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		resp, err := ps.Recv()
		if err != nil || len(resp.Acks) != 1 || resp.Acks[0].Offset != int64(i) {
			t.Fatalf("stream ack %d: %v %v", i, resp, err)
		}
	}
	_ = ps.CloseSend()
	var got []string
	for len(got) < 3 {
		resp, err := sub.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.Records {
			got = append(got, string(r.Value))
		}
	}
	if !slices.Equal(got, []string{"v0", "v1", "v2"}) {
		t.Fatalf("subscribed to %v", got)
	}
}

// A subscriber that reads slowly, so that its stream waits in Send, across a delete of
// its topic, the purge and a create of the name, ends with NotFound: it reads none of the
// new topic's records at the offsets it had come to.
func TestSubscriberOfARecreatedTopicEnds(t *testing.T) {
	tc := newCluster(t, 0, 2*time.Second)
	tc.agentArgs = []string{"--sweep-interval", "500ms"}
	a := tc.addAgent("agent-1", "zone-a", 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c, _ := dial(t, a.GRPCAddr)
	p := int32(0)
	produce := func(prefix string, n int) {
		for from := 0; from < n; from += 10 {
			req := &pb.ProduceRequest{Topic: "again", Partition: &p}
			for i := from; i < from+10; i++ {
				req.Records = append(req.Records, &pb.Record{Value: fmt.Appendf(make([]byte, 0, 4<<10), "%s-%d-%04096d", prefix, i, 0)})
			}
			harness.Eventually(t, 60*time.Second, func() error { _, err := c.Produce(ctx, req); return err })
		}
	}
	tc.topic("again", 1)
	produce("old", 100) // 400 KiB: far more than the slow connection's windows take
	conn, err := grpc.NewClient(a.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	sub, err := pb.NewStreamHouseClient(conn).Subscribe(ctx, &pb.SubscribeRequest{Topic: "again", Partition: 0, MaxBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	first, err := sub.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteTopic(ctx, &pb.DeleteTopicRequest{Name: "again"}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, func() error {
		_, err := tc.coord.CreateTopic(ctx, coordination.TopicSpec{Name: "again", Partitions: 1})
		return err
	})
	produce("new", 200)

	read := 0
	for resp := first; ; {
		for _, r := range resp.Records {
			if want := fmt.Sprintf("old-%d-", read); r.Offset != int64(read) || !strings.HasPrefix(string(r.Value), want) {
				t.Fatalf("record %d of the subscription is offset %d, %.12q: want the deleted topic's %q", read, r.Offset, r.Value, want)
			}
			read++
		}
		if resp, err = sub.Recv(); err != nil {
			break
		}
	}
	if status.Code(err) != codes.NotFound {
		t.Fatalf("the subscription ended with %v, want NotFound", err)
	}
	t.Logf("read %d records of the deleted topic, then NotFound", read)
}

// An agent stopping ends its Subscribe streams at once, Unavailable, says NOT_SERVING
// to a health watch, and stops within seconds: before, a stream went on retrying its
// fetches through a node that had left, and held the agent's graceful stop for its whole
// --shutdown-timeout (30 s), its subscriber getting nothing meanwhile (and a health watch
// held it as long). Its subscriber then subscribes through another agent, from where it
// was, and gets what is produced.
func TestAStoppingAgentEndsItsSubscriptions(t *testing.T) {
	tc := newCluster(t, 2, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, conn := dial(t, tc.agents[0].GRPCAddr)
	if _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "followed", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	tc.waitOwned(60*time.Second, map[string]int32{"followed": 1})
	// Latest: nothing yet, the stream waits for records.
	sub, err := c.Subscribe(ctx, &pb.SubscribeRequest{Topic: "followed", Partition: 0, Offset: pb.OffsetLatest})
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := sub.Recv()
		ended <- err
	}()
	// Its health, watched: it says NOT_SERVING once the agent begins to stop.
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: pb.StreamHouse_ServiceDesc.ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := watch.Recv(); err != nil || st.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before the stop: %v, %v", st, err)
	}
	notServing := make(chan bool, 1)
	go func() {
		for {
			st, err := watch.Recv()
			if err != nil {
				notServing <- false
				return
			}
			if st.Status == healthpb.HealthCheckResponse_NOT_SERVING {
				notServing <- true
				return
			}
		}
	}()
	start := time.Now()
	if err := tc.agents[0].Stop(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if !<-notServing {
		t.Fatal("the stopping agent's health never said NOT_SERVING")
	}
	select {
	case err := <-ended:
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("the stream of a stopped agent ended %v, want Unavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream of a stopped agent still open")
	}
	if took > 15*time.Second {
		t.Fatalf("the agent took %v to stop, its subscription open", took)
	}
	t.Logf("stopped in %v", took.Round(time.Millisecond))

	other, _ := dial(t, tc.agents[1].GRPCAddr)
	again, err := other.Subscribe(ctx, &pb.SubscribeRequest{Topic: "followed", Partition: 0, Offset: 0})
	if err != nil {
		t.Fatal(err)
	}
	p := int32(0)
	if _, err := other.Produce(ctx, &pb.ProduceRequest{Topic: "followed", Partition: &p, Records: []*pb.Record{{Value: []byte("after")}}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := again.Recv(); err != nil || len(resp.Records) != 1 || string(resp.Records[0].Value) != "after" {
		t.Fatalf("subscribed again through the other agent: %v, %v", resp, err)
	}
}
