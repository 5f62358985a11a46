package observability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
	"github.com/streamhouse/streamhouse/tests/harness"
)

const (
	topic      = "orders"
	partitions = 6
	group      = "billing"
	// scrape is Prometheus's scrape interval here; rateWindow stands for Grafana's
	// $__rate_interval (at least four scrapes).
	scrape     = time.Second
	rateWindow = "10s"
	sessionTTL = 3 * time.Second
)

func TestObservability(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	root := fmt.Sprintf("/observability-%d", time.Now().UnixNano()) // runs share one etcd (-count)
	var agents []*harness.Agent
	for i := range 3 {
		a, err := harness.StartAgent(ctx, dir, harness.AgentConfig{
			Node: fmt.Sprintf("agent-%d", i+1), Zone: fmt.Sprintf("zone-%c", 'a'+i), Etcd: etcd.Endpoint,
			EtcdRoot: root, SessionTTL: sessionTTL,
			StoreURL: "s3://observability?create_bucket=true&endpoint=" + minio.Endpoint,
			Env:      []string{"AWS_ACCESS_KEY_ID=" + minio.AccessKey, "AWS_SECRET_ACCESS_KEY=" + minio.SecretKey, "AWS_REGION=us-east-1"},
		})
		if err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s log tail:\n%s", a.Config.Node, a.Process.LogTail(4000))
			}
			_ = a.Signal(syscall.SIGCONT)
			if err := a.Stop(); err != nil {
				t.Error(err)
			}
		})
	}
	var targets []string
	for _, a := range agents {
		targets = append(targets, a.AdminAddr)
	}
	prom, err := harness.StartPrometheus(ctx, t.TempDir(), scrape, targets)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := prom.Stop(); err != nil {
			t.Error(err)
		}
	})

	clients := make([]pb.StreamHouseClient, len(agents))
	for i, a := range agents {
		conn, err := grpc.NewClient(a.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		clients[i] = pb.NewStreamHouseClient(conn)
	}
	if _, err := clients[0].CreateTopic(ctx, &pb.CreateTopicRequest{Name: topic, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	var kafkaAddrs []string
	for _, a := range agents {
		kafkaAddrs = append(kafkaAddrs, a.KafkaAddr)
	}
	stopLoad := startLoad(t, clients, kafkaAddrs)
	defer stopLoad()

	t.Run("dashboard queries return data", func(t *testing.T) { checkDashboard(t, prom) })
	t.Run("killed agent shows in metrics", func(t *testing.T) { checkKill(t, prom, agents) })
	t.Run("paused agent shows in metrics", func(t *testing.T) { checkPause(t, prom, agents[:2]) })
	t.Run("readyz follows etcd", func(t *testing.T) { checkReadyz(t, agents[:2]) })
}

// startLoad produces to every partition through every agent, over gRPC and over Kafka
// (kgo), and consumes as group "billing", committing half of what it read so that the
// group lags. Errors are expected while partitions move and are retried by the next round.
func startLoad(t *testing.T, clients []pb.StreamHouseClient, kafkaAddrs []string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Not idempotent, and each record given up after 5 s: an idempotent producer keeps a
	// record it may have sent until it knows its fate, whatever its context says, and the
	// checks below stop etcd and kill agents under it; the load must end when asked.
	producer, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddrs...), kgo.DefaultProduceTopic(topic),
		kgo.DisableIdempotentWrite(), kgo.RecordDeliveryTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		defer producer.Close()
		for i := 0; ctx.Err() == nil; i++ {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			_ = producer.ProduceSync(cctx, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i%50), Value: fmt.Appendf(nil, "kafka order %d", i)})
			ccancel()
			time.Sleep(20 * time.Millisecond)
		}
	})
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			req := &pb.ProduceRequest{Topic: topic}
			for j := range 50 {
				req.Records = append(req.Records, &pb.Record{Key: fmt.Appendf(nil, "k%d", j), Value: fmt.Appendf(nil, "order %d/%d", i, j)})
			}
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			_, _ = clients[i%len(clients)].Produce(cctx, req)
			ccancel()
			time.Sleep(20 * time.Millisecond)
		}
	})
	wg.Go(func() {
		next := make([]int64, partitions)
		for i := 0; ctx.Err() == nil; i++ {
			c := clients[(i+1)%len(clients)]
			commit := &pb.CommitOffsetsRequest{Group: group}
			for p := range int32(partitions) {
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				resp, err := c.Fetch(cctx, &pb.FetchRequest{Topic: topic, Partition: p, Offset: next[p], MaxBytes: 64 << 10})
				ccancel()
				if err == nil && len(resp.Records) > 0 {
					next[p] = resp.Records[len(resp.Records)-1].Offset + 1
				}
				commit.Offsets = append(commit.Offsets, &pb.PartitionOffset{Topic: topic, Partition: p, Offset: next[p] / 2})
			}
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			_, _ = c.CommitOffsets(cctx, commit)
			ccancel()
			time.Sleep(100 * time.Millisecond)
		}
	})
	return func() { cancel(); wg.Wait() }
}

// The Prometheus configuration shipped with the compose cluster is valid.
func TestShippedPrometheusConfig(t *testing.T) {
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	promtool, err := harness.Binary("promtool")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "config", filepath.Join(root, "deploy/compose/prometheus.yml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

// dashboardQueries returns the PromQL of every panel of the shipped dashboard, with
// Grafana's variables replaced as Grafana would: all topics, the rate window, a range.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "deploy/compose/grafana/dashboards/streamhouse.json"))
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	}
	var d struct {
		UID    string  `json:"uid"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if d.UID == "" {
		t.Fatal("the dashboard has no uid: provisioning would duplicate it")
	}
	vars := strings.NewReplacer("$topic", ".*", "$__rate_interval", rateWindow, "$__range", "10m")
	out := map[string]string{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "prometheus" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %q, %d queries; want the provisioned uid \"prometheus\" and a query", p.Title, p.Datasource.UID, len(p.Targets))
		}
		for _, q := range p.Targets {
			out[p.Title+" / "+q.RefID] = vars.Replace(q.Expr)
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d dashboard queries found", len(out))
	}
	return out
}

// checkDashboard waits until every dashboard query returns at least one finite sample.
func checkDashboard(t *testing.T, prom *harness.Prometheus) {
	queries := dashboardQueries(t)
	harness.Eventually(t, 90*time.Second, func() error {
		var missing []string
		for name, q := range queries {
			samples, err := prom.Query(context.Background(), q)
			if err != nil {
				t.Fatalf("%s: %v", name, err) // invalid PromQL: waiting will not help
			}
			finite := false
			for _, s := range samples {
				finite = finite || !math.IsNaN(s.Value) && !math.IsInf(s.Value, 0)
			}
			if !finite {
				missing = append(missing, fmt.Sprintf("%s: %s (%d samples)", name, q, len(samples)))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d queries without data:\n  %s", len(missing), len(queries), strings.Join(missing, "\n  "))
		}
		return nil
	})
	t.Logf("all %d dashboard queries return data", len(queries))
}

// value is the single value of a query that must return one sample (0 when none).
func value(t *testing.T, prom *harness.Prometheus, q string) float64 {
	t.Helper()
	samples, err := prom.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) == 0 {
		return 0
	}
	return samples[0].Value
}

// checkKill kills -9 an agent: its partitions move to the others, which count new epochs
// and a rebalance; the dead agent's series go stale.
func checkKill(t *testing.T, prom *harness.Prometheus, agents []*harness.Agent) {
	victim := agents[2]
	others := fmt.Sprintf(`node!=%q`, victim.Config.Node)
	owned := value(t, prom, fmt.Sprintf(`sum(streamhouse_partitions_owned{node=%q})`, victim.Config.Node))
	if owned == 0 {
		t.Fatalf("%s owns no partition: killing it would prove nothing", victim.Config.Node)
	}
	acquisitions := value(t, prom, `sum(streamhouse_lease_acquisitions_total{`+others+`})`)
	rebalances := value(t, prom, `sum(streamhouse_rebalances_total{`+others+`})`)
	if err := victim.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	harness.Eventually(t, 60*time.Second, func() error {
		if v := value(t, prom, fmt.Sprintf(`up{instance=%q}`, victim.AdminAddr)); v != 0 {
			return fmt.Errorf("%s still up", victim.Config.Node)
		}
		if v := value(t, prom, `sum(streamhouse_partitions_owned)`); v != partitions {
			return fmt.Errorf("%v partitions owned in total, want %d", v, partitions)
		}
		if v := value(t, prom, fmt.Sprintf(`count(streamhouse_partitions_owned{node=%q})`, victim.Config.Node)); v != 0 {
			return fmt.Errorf("the killed agent's gauge is still there")
		}
		if v := value(t, prom, `sum(streamhouse_lease_acquisitions_total{`+others+`})`); v < acquisitions+owned {
			return fmt.Errorf("survivors acquired %v leases since the kill, want at least %v", v-acquisitions, owned)
		}
		if v := value(t, prom, `sum(streamhouse_rebalances_total{`+others+`})`); v <= rebalances {
			return fmt.Errorf("no rebalance counted by the survivors")
		}
		return nil
	})
	t.Logf("kill -9 %s (%v partitions): survivors own all %d, counted in Prometheus %s after the kill",
		victim.Config.Node, owned, partitions, time.Since(killed).Round(100*time.Millisecond))
}

// checkPause freezes an agent past its session TTL: on waking it finds its leases gone,
// counts them as lost (or its commits as fenced), rejoins, and the partitions-owned gauge
// still adds up.
func checkPause(t *testing.T, prom *harness.Prometheus, agents []*harness.Agent) {
	victim := agents[1]
	node := fmt.Sprintf(`node=%q`, victim.Config.Node)
	if value(t, prom, `sum(streamhouse_partitions_owned{`+node+`})`) == 0 {
		t.Fatalf("%s owns no partition: pausing it would prove nothing", victim.Config.Node)
	}
	stale := func() float64 {
		return value(t, prom, `sum(streamhouse_lease_releases_total{`+node+`,result="lost"})`) +
			value(t, prom, `sum(streamhouse_commits_total{result="fenced",instance=`+fmt.Sprintf("%q", victim.AdminAddr)+`})`)
	}
	before := stale()
	if err := victim.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(sessionTTL + 2*time.Second)
	if err := victim.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, func() error {
		if v := stale(); v <= before {
			return fmt.Errorf("no lost lease or fenced commit counted on %s", victim.Config.Node)
		}
		if v := value(t, prom, `sum(streamhouse_partitions_owned)`); v != partitions {
			return fmt.Errorf("%v partitions owned in total, want %d", v, partitions)
		}
		if v := value(t, prom, `sum(streamhouse_partitions_owned{`+node+`})`); v == 0 {
			return fmt.Errorf("%s has not taken partitions back", victim.Config.Node)
		}
		return nil
	})
	t.Logf("SIGSTOP %s for %s: %v lost leases or fenced commits counted; it rejoined", victim.Config.Node,
		sessionTTL+2*time.Second, stale()-before)
}

// checkReadyz stops etcd: every agent turns not ready, then ready again once etcd is back.
func checkReadyz(t *testing.T, agents []*harness.Agent) {
	status := func(a *harness.Agent) (int, string) {
		resp, err := http.Get("http://" + a.AdminAddr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	all := func(want int) func() error {
		return func() error {
			for _, a := range agents {
				if code, body := status(a); code != want {
					return fmt.Errorf("%s /readyz: %d %s, want %d", a.Config.Node, code, body, want)
				}
			}
			return nil
		}
	}
	harness.Eventually(t, 60*time.Second, all(http.StatusOK))
	if err := etcd.Stop(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, all(http.StatusServiceUnavailable))
	_, body := status(agents[0])
	t.Logf("etcd stopped: %s", body)
	if err := etcd.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, all(http.StatusOK))
	if code, body := status(agents[0]); code != http.StatusOK || body != "ready" {
		t.Fatalf("after etcd restarted: %d %q", code, body)
	}
}
