// Package compose_test runs the docker compose cluster of deploy/compose (3 etcd members,
// MinIO, 3 agents in 3 zones, images built here) and checks what its users rely on: the
// cluster comes up healthy, serves produce and consume through any agent, shows its state
// through etcdctl and to Kafka clients on the host, and loses no acked record when an agent
// container is killed.
package compose_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
	"github.com/streamhouse/streamhouse/tests/harness"
)

type compose struct {
	t       *testing.T
	cmd     []string
	dir     string
	project string
	env     []string
	kafka   []string // the agents' Kafka listeners, as published on this host
}

func (c *compose) run(args ...string) (string, error) {
	cmd := exec.Command(c.cmd[0], append(append(c.cmd[1:], "-p", c.project), args...)...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *compose) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("compose %v: %v\n%s", args, err, out)
	}
	return out
}

func startCompose(t *testing.T) (*compose, []string) {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skip("no Docker engine reachable (docker info failed); the compose cluster test needs one")
	}
	var cmd []string
	if exec.Command("docker", "compose", "version").Run() == nil {
		cmd = []string{"docker", "compose"}
	} else if _, err := exec.LookPath("docker-compose"); err == nil {
		cmd = []string{"docker-compose"}
	} else {
		// Not a reason to stop: `make tools` installs docker-compose where Docker runs.
		t.Fatal("Docker is reachable but neither `docker compose` nor docker-compose is installed: run `make tools` (as root), or install one")
	}
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("bash", "deploy/compose/images.sh")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build images: %v\n%s", err, out)
	}
	c := &compose{t: t, cmd: cmd, dir: root + "/deploy/compose", project: fmt.Sprintf("shtest%d", os.Getpid())}
	var agents []string
	for _, v := range []string{"AGENT1_KAFKA_PORT", "AGENT2_KAFKA_PORT", "AGENT3_KAFKA_PORT"} {
		p, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		c.env = append(c.env, fmt.Sprintf("%s=%d", v, p))
		c.kafka = append(c.kafka, fmt.Sprintf("127.0.0.1:%d", p))
	}
	for _, v := range []string{"AGENT1_PORT", "AGENT2_PORT", "AGENT3_PORT", "ETCD_PORT", "MINIO_PORT", "PROMETHEUS_PORT",
		"MINIO_CONSOLE_PORT", "AGENT1_ADMIN_PORT", "AGENT2_ADMIN_PORT", "AGENT3_ADMIN_PORT"} {
		p, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		c.env = append(c.env, fmt.Sprintf("%s=%d", v, p))
		if strings.HasPrefix(v, "AGENT") || v == "PROMETHEUS_PORT" {
			agents = append(agents, fmt.Sprintf("127.0.0.1:%d", p)) // the last one is Prometheus
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.run("logs", "--tail", "30")
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := c.run("down", "-v", "--timeout", "30"); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})
	c.must("up", "-d")
	return c, agents
}

func client(t *testing.T, addr string) pb.StreamHouseClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pb.NewStreamHouseClient(conn)
}

func TestComposeClusterFailsOverWithoutLoss(t *testing.T) {
	c, agents := startCompose(t)
	prometheus := agents[3]
	ctx := context.Background()
	a1, a2, a3 := client(t, agents[0]), client(t, agents[1]), client(t, agents[2])
	// Every agent answers (the first request through a published port can be reset while
	// that agent still starts) and sees all three.
	harness.Eventually(t, 120*time.Second, func() error {
		for i, a := range []pb.StreamHouseClient{a1, a2, a3} {
			st, err := a.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
			if err != nil {
				return fmt.Errorf("agent %d: %w", i+1, err)
			}
			if len(st.Members) != 3 {
				return fmt.Errorf("agent %d sees %d members", i+1, len(st.Members))
			}
		}
		return nil
	})
	if _, err := a1.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "orders", Partitions: 6}); err != nil {
		t.Fatal(err)
	}
	owners := func() map[int32]*pb.PartitionInfo {
		out := map[int32]*pb.PartitionInfo{}
		harness.Eventually(t, 60*time.Second, func() error {
			d, err := a3.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "orders"})
			if err != nil {
				return err
			}
			for _, p := range d.Partitions {
				if p.Owner == "" {
					return fmt.Errorf("partition %d unowned", p.Partition)
				}
				out[p.Partition] = p
			}
			return nil
		})
		return out
	}
	before := owners()
	zones := map[string]int{}
	for _, p := range before {
		zones[p.Zone]++
	}
	if len(zones) != 3 {
		t.Fatalf("partitions per zone %v: not spread over the three zones", zones)
	}

	acked := map[int32]map[int64]string{}
	produce := func(from, n int) {
		req := &pb.ProduceRequest{Topic: "orders"}
		for i := from; i < from+n; i++ {
			req.Records = append(req.Records, &pb.Record{Key: fmt.Appendf(nil, "k%d", i%50), Value: fmt.Appendf(nil, "v%d", i)})
		}
		var resp *pb.ProduceResponse
		harness.Eventually(t, 90*time.Second, func() error {
			var err error
			resp, err = a2.Produce(ctx, req)
			return err
		})
		for i, a := range resp.Acks {
			if acked[a.Partition] == nil {
				acked[a.Partition] = map[int64]string{}
			}
			acked[a.Partition][a.Offset] = string(req.Records[i].Value)
		}
	}
	produce(0, 1000)
	kafkaRoundTrip(t, c.kafka)

	// Prometheus scrapes all three agents and sees what they acked.
	harness.Eventually(t, 60*time.Second, func() error {
		if v := promQuery(t, prometheus, `sum(up{job="streamhouse"})`); v != 3 {
			return fmt.Errorf("%v agents up in Prometheus", v)
		}
		if v := promQuery(t, prometheus, `sum(streamhouse_produce_records_total{topic="orders"})`); v != 1000 {
			return fmt.Errorf("Prometheus counts %v acked records", v)
		}
		return nil
	})

	// The operator's view through etcdctl inside the etcd container.
	leases := c.must("exec", "-T", "etcd1", "/usr/local/bin/etcdctl", "get", "--prefix", "/streamhouse/leases/", "--keys-only")
	if n := strings.Count(leases, "/streamhouse/leases/orders/"); n != 6 {
		t.Fatalf("etcdctl shows %d lease keys, want 6:\n%s", n, leases)
	}

	c.must("kill", "agent1")
	killed := time.Now()
	produce(1000, 1000)
	t.Logf("docker kill agent1: first produce answered %s after the kill", time.Since(killed).Round(time.Millisecond))
	after := owners()
	for p, o := range before {
		if o.Owner == "agent-1" && (after[p].Owner == "agent-1" || after[p].Epoch <= o.Epoch) {
			t.Fatalf("partition %d: %s epoch %d after the kill (was %s epoch %d)", p, after[p].Owner, after[p].Epoch, o.Owner, o.Epoch)
		}
	}
	verify(t, a3, acked)

	// A paused agent (frozen past its 5s session TTL) is fenced; unpaused, it rejoins.
	c.must("start", "agent1")
	members := func(n int) {
		harness.Eventually(t, 60*time.Second, func() error {
			st, err := a3.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
			if err != nil {
				return err
			}
			if len(st.Members) != n || st.Unowned != 0 {
				return fmt.Errorf("%d members, %d partitions unowned", len(st.Members), st.Unowned)
			}
			return nil
		})
	}
	members(3)
	held := owners()
	onAgent2 := 0
	for _, o := range held {
		if o.Owner == "agent-2" {
			onAgent2++
		}
	}
	if onAgent2 == 0 {
		t.Fatal("agent-2 owns no partition: pausing it would prove nothing")
	}
	c.must("pause", "agent2")
	paused := time.Now()
	harness.Eventually(t, 60*time.Second, func() error {
		d, err := a3.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "orders"})
		if err != nil {
			return err
		}
		for _, p := range d.Partitions {
			if p.Owner == "" || p.Owner == "agent-2" {
				return fmt.Errorf("partition %d still on %q", p.Partition, p.Owner)
			}
		}
		return nil
	})
	// Produce through agent3 while agent2 sleeps.
	a2, prod := a3, a2
	produce(2000, 500)
	a2 = prod
	c.must("unpause", "agent2")
	members(3)
	t.Logf("docker pause agent2 for %s: its partitions moved, it rejoined", time.Since(paused).Round(time.Second))
	for p, o := range held {
		if o.Owner == "agent-2" {
			if now := owners()[p]; now.Epoch <= o.Epoch {
				t.Fatalf("partition %d: epoch %d after the pause, was %d", p, now.Epoch, o.Epoch)
			}
		}
	}
	produce(2500, 500)
	verify(t, a3, acked)

	// One etcd member down: the cluster keeps serving.
	c.must("kill", "etcd2")
	produce(3000, 500)
	verify(t, a3, acked)

	// MinIO restarted: produce resumes after retries, nothing acked is lost.
	c.must("restart", "minio")
	produce(3500, 500)
	verify(t, a3, acked)
	total := 0
	for _, offs := range acked {
		total += len(offs)
	}
	t.Logf("%d acked records, all readable after an agent kill, an agent pause, an etcd member kill and a MinIO restart", total)

	// Nothing is left behind.
	c.must("down", "-v", "--timeout", "30")
	for _, kind := range []string{"ps", "network", "volume"} {
		args := []string{kind, "ls", "-q", "--filter", "label=com.docker.compose.project=" + c.project}
		if kind == "ps" {
			args = []string{"ps", "-aq", "--filter", "label=com.docker.compose.project=" + c.project}
		}
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Fatalf("after down, docker %s shows %q (%v)", kind, out, err)
		}
	}
}

// promQuery returns the value of an instant query, -1 when it has none.
func promQuery(t *testing.T, addr, query string) float64 {
	t.Helper()
	samples, err := harness.Query(context.Background(), "http://"+addr, query)
	if err != nil || len(samples) == 0 {
		return -1
	}
	return samples[0].Value
}

// verify reads every partition to its high-water mark and checks each acked record.
func verify(t *testing.T, c pb.StreamHouseClient, acked map[int32]map[int64]string) {
	t.Helper()
	ctx := context.Background()
	for p, offs := range acked {
		var got []*pb.Record
		for {
			var resp *pb.FetchResponse
			harness.Eventually(t, 60*time.Second, func() error {
				var err error
				resp, err = c.Fetch(ctx, &pb.FetchRequest{Topic: "orders", Partition: p, Offset: int64(len(got))})
				return err
			})
			got = append(got, resp.Records...)
			if int64(len(got)) >= resp.HighWaterMark || len(resp.Records) == 0 {
				break
			}
		}
		for off, v := range offs {
			if off >= int64(len(got)) || string(got[off].Value) != v {
				t.Fatalf("partition %d: acked %q at %d is lost", p, v, off)
			}
		}
	}
}

// kafkaRoundTrip creates a topic, produces and consumes through the agents' published
// Kafka listeners with kgo: the addresses the agents advertise work from the host.
func kafkaRoundTrip(t *testing.T, seeds []string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic("kafka-check"),
		kgo.ConsumeTopics("kafka-check"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, "kafka-check"); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i%7), Value: fmt.Appendf(nil, "kafka-%d", i)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("Kafka produce through the published ports: %v", err)
	}
	seen := map[string]bool{}
	for len(seen) < len(recs) && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	if len(seen) != len(recs) {
		t.Fatalf("Kafka consume read %d of %d records", len(seen), len(recs))
	}
}
