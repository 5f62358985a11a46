package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/streamhouse/streamhouse/coordination"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
	"github.com/streamhouse/streamhouse/segmentstore"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/tests/harness"
)

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, harness.Services{Streamhouse: true}))
}

const (
	topic      = "chaos"
	partitions = 6
	agentCount = 3
	sessionTTL = 2 * time.Second
	// The sweeper's shortest grace, and sweeps often enough to delete within a short run.
	sweepGrace    = "3m"
	sweepInterval = "5s"
)

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("$%s=%q: want a positive integer", name, v)
	}
	return n
}

func TestChaos(t *testing.T) {
	faults, seed := envInt(t, "CHAOS_FAULTS", 28), envInt(t, "CHAOS_SEED", 1)
	t.Logf("chaos run: %d faults, seed %d (CHAOS_FAULTS, CHAOS_SEED)", faults, seed)
	runChaos(t, faults, seed, envKinds(t, faultKinds), false)
}

// TestChaosOverKafka runs the workload's producers, followers and consumer group over
// the Kafka protocol (kgo idempotent producers and a kgo group of two members, through
// every agent): CHAOS_KAFKA_FAULTS (default 9) faults,
// by default of the agents (killed, paused past their session, restarted); CHAOS_KINDS
// chooses others.
func TestChaosOverKafka(t *testing.T) {
	faults, seed := envInt(t, "CHAOS_KAFKA_FAULTS", 9), envInt(t, "CHAOS_SEED", 1)
	t.Logf("chaos run over Kafka: %d faults, seed %d (CHAOS_KAFKA_FAULTS, CHAOS_SEED)", faults, seed)
	runChaos(t, faults, seed, envKinds(t, []string{killAgent, pauseAgent, restartAgent}), true)
}

// envKinds is the fault kinds $CHAOS_KINDS names, def when it is not set.
func envKinds(t *testing.T, def []string) []string {
	v := os.Getenv("CHAOS_KINDS")
	if v == "" {
		return def
	}
	kinds, err := kindsByName(strings.Split(v, ","))
	if err != nil {
		t.Fatalf("$CHAOS_KINDS: %v", err)
	}
	return kinds
}

// runChaos runs the workload (over Kafka or gRPC) through a schedule of faults of the
// given kinds, then checks the history.
func runChaos(t *testing.T, faults, seed int, kinds []string, overKafka bool) {
	ctx := context.Background()
	c, storeURL := startCluster(t)
	t.Setenv("AWS_ACCESS_KEY_ID", c.minio.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", c.minio.SecretKey)
	t.Setenv("AWS_REGION", "us-east-1")

	var clients []pb.StreamHouseClient
	for _, a := range c.agents {
		conn, err := grpc.NewClient(a.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		clients = append(clients, pb.NewStreamHouseClient(conn))
	}
	harness.Eventually(t, 30*time.Second, func() error {
		_, err := clients[0].CreateTopic(ctx, &pb.CreateTopicRequest{Name: topic, Partitions: partitions})
		return err
	})

	w := newWorkload(clients, topic, partitions)
	if overKafka {
		for _, a := range c.agents {
			w.kafka = append(w.kafka, a.KafkaAddr)
		}
	}
	w.start(uint64(seed))
	t.Cleanup(w.halt) // before the cluster stops under it, if the run ends early
	harness.Eventually(t, 60*time.Second, func() error { return w.ackedSince(time.Time{}) })
	epochs := leaseEpochs(t, c)

	store, err := objstore.Open(ctx, storeURL)
	if err != nil {
		t.Fatal(err)
	}
	lister := startLister(store)
	t.Cleanup(func() { lister.halt() })

	rng := rand.New(rand.NewPCG(uint64(seed), 0xc4a05))
	var done []fault
	for i, kind := range schedule(faults, kinds, rng) {
		f, err := c.inject(ctx, kind, rng)
		if err != nil {
			t.Fatalf("fault %d: %v", i+1, err)
		}
		// Ready once every partition acked a record after the heal.
		err = harness.WaitFor(60*time.Second, func() error { return w.ackedSince(f.Healed) })
		f.Ready = time.Now()
		if err != nil {
			t.Errorf("fault %d (%s on %s): not recovered 60s after the heal: %v", i+1, f.Kind, f.Target, err)
			logAgentsSince(t, c, f.Start.Add(-time.Second)) // what kept the partitions silent
		}
		t.Logf("fault %2d/%d %-24s on %-24s held %5.1fs, all partitions acking %5.1fs after the heal",
			i+1, faults, f.Kind, f.Target, f.Healed.Sub(f.Start).Seconds(), f.Ready.Sub(f.Healed).Seconds())
		done = append(done, f)
		if os.Getenv("CHAOS_DEBUG") != "" && err == nil {
			logAgentsSince(t, c, f.Start.Add(-time.Second))
		}
		// A calm of 0.5–2 s before the next fault: part of the schedule, not a wait for
		// a condition.
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
	}
	end := time.Now()
	w.halt()
	seen := lister.halt()
	if err := w.readAll(time.Now().Add(2 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	objects := checkObjects(t, c, store, seen, &w.h)

	r := Check(w.h)
	var names []string
	var starts []time.Time
	for _, f := range done {
		names, starts = append(names, f.Kind), append(starts, f.Start)
	}
	table := summary(r, objects, Unavailability(names, starts, end, w.ackTimes), faults, seed, end.Sub(done[0].Start), overKafka)
	t.Log("\n" + table)
	if path := os.Getenv("CHAOS_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
	if bad := r.Failed(); len(bad) > 0 {
		t.Errorf("the promise broke: %s", strings.Join(bad, "; "))
	}
	if r.Acked < 1000 || r.ReaderRead < r.Acked/2 {
		t.Errorf("the run proved little: %d records acked, %d read by followers", r.Acked, r.ReaderRead)
	}
	// A fault that takes an agent's partitions from it (killed, stopped, paused or cut
	// from etcd past its TTL) moves them to new epochs: a run whose faults moved none
	// tested no failover, whatever its history says.
	if slices.ContainsFunc(names, func(k string) bool { return slices.Contains(movingKinds, k) }) {
		moved, now := 0, leaseEpochs(t, c)
		for key, epoch := range epochs {
			if now[key] != epoch {
				moved++
			}
		}
		if moved == 0 {
			t.Errorf("the run proved little: faults that move partitions were injected, and all %d partitions kept their epochs", len(epochs))
		}
		t.Logf("%d of %d partitions in a new epoch since the first fault", moved, len(epochs))
	}
}

// coordination is a client of the cluster's etcd and keys, closed at the end of the test.
func (c *cluster) coordination(t *testing.T) *coordination.Client {
	t.Helper()
	e, err := clientv3.New(clientv3.Config{Endpoints: c.etcd.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	coord, err := coordination.New(e, coordination.Options{Root: "/streamhouse"})
	if err != nil {
		t.Fatal(err)
	}
	return coord
}

// movingKinds are the faults after which the agent they hit holds none of its partitions
// in the epoch it held them in.
var movingKinds = []string{killAgent, pauseAgent, restartAgent, cutAgent}

// leaseEpochs returns the epoch (the lease key's revision) each held partition is in,
// by lease key.
func leaseEpochs(t *testing.T, c *cluster) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	coord := c.coordination(t)
	e := coord.Etcd()
	resp, err := e.Get(ctx, coord.Keys().Leases(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = kv.CreateRevision
	}
	return out
}

func startCluster(t *testing.T) (*cluster, string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e, err := harness.StartEtcdCluster(ctx, dir, 3, harness.EtcdOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Error(err)
		}
	})
	m, err := harness.StartMinIO(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			t.Error(err)
		}
	})
	c := &cluster{etcd: e, minio: m, ttl: sessionTTL}
	storeURL := "s3://chaos?create_bucket=true&endpoint=" + m.Endpoint
	for i := range agentCount {
		store, err := harness.StartProxy(strings.TrimPrefix(m.Endpoint, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = store.Close() })
		c.stores = append(c.stores, store)
		var proxies []*harness.Proxy
		for _, member := range e.Members {
			p, err := harness.StartProxy(strings.TrimPrefix(member.Endpoint, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Close() })
			proxies = append(proxies, p)
		}
		c.proxies = append(c.proxies, proxies)
		cfg := harness.AgentConfig{
			Node: fmt.Sprintf("agent-%d", i+1), Zone: fmt.Sprintf("zone-%d", i+1),
			Etcd: c.etcdEndpoints(i), EtcdRoot: "/streamhouse", SessionTTL: sessionTTL,
			StoreURL: "s3://chaos?create_bucket=true&endpoint=http://" + store.Addr,
			Env:      []string{"AWS_ACCESS_KEY_ID=" + m.AccessKey, "AWS_SECRET_ACCESS_KEY=" + m.SecretKey, "AWS_REGION=us-east-1"},
			Args:     []string{"--sweep-grace", sweepGrace, "--sweep-interval", sweepInterval},
		}
		peers, err := harness.BehindProxy(&cfg) // the others dial it through peers
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = peers.Close() })
		c.peers = append(c.peers, peers)
		a, err := harness.StartAgent(ctx, dir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := a.Stop(); err != nil {
				t.Error(err)
			}
		})
		c.agents = append(c.agents, a)
	}
	return c, storeURL
}

// lister lists the store's objects every second, so that the end of the run knows which
// objects existed at some point.
type lister struct {
	stop  chan struct{}
	done  chan map[string]bool
	halts sync.Once
	seen  map[string]bool
}

func startLister(store objstore.Store) *lister {
	l := &lister{stop: make(chan struct{}), done: make(chan map[string]bool)}
	go func() {
		seen := map[string]bool{}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			objs, err := store.List(ctx, segmentstore.DataPrefix)
			cancel()
			if err == nil {
				for _, o := range objs {
					seen[o.Key] = true
				}
			}
			select {
			case <-l.stop:
				l.done <- seen
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return l
}

// halt stops the lister and returns what it saw; later calls return the same (a failed
// run halts it in its cleanup).
func (l *lister) halt() map[string]bool {
	l.halts.Do(func() { close(l.stop); l.seen = <-l.done })
	return l.seen
}

// objectCounts is what happened to the objects.
type objectCounts struct {
	Indexed, Seen, Deleted, Orphans int
}

// checkObjects reads the segment index and confirms every committed object is in the
// store (h.MissingObjects counts those that are not); objects seen during the run and
// gone now were deleted by the sweeper, and must all have been orphans.
func checkObjects(t *testing.T, c *cluster, store objstore.Store, seen map[string]bool, h *History) objectCounts {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	coord := c.coordination(t)
	index, err := coord.ObjectIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	indexed := index.Indexed
	now, err := store.List(ctx, segmentstore.DataPrefix)
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for _, o := range now {
		present[o.Key] = true
		seen[o.Key] = true
	}
	counts := objectCounts{Indexed: len(indexed), Seen: len(seen)}
	for o := range indexed {
		if !present[o] {
			h.MissingObjects++
			if _, err := store.Head(ctx, o); !errors.Is(err, objstore.ErrNotFound) {
				t.Errorf("committed object %s is not listed, and Head says %v", o, err)
			}
		}
	}
	for o := range seen {
		switch {
		case !present[o]:
			counts.Deleted++
		case !indexed[o]:
			counts.Orphans++
		}
	}
	return counts
}

// summary is the run's table, in the Markdown docs/RELIABILITY.md shows.
func summary(r Report, o objectCounts, outages []Outage, faults, seed int, took time.Duration, overKafka bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d faults, seed %d, %s of faults; 3 agents, 3 etcd members, 1 MinIO, %d partitions\n", faults, seed, took.Round(time.Second), partitions)
	if overKafka {
		fmt.Fprintf(&b, "producers, followers and the group over the Kafka protocol (kgo, idempotent producers, a group of 2); the group's watcher and final read over gRPC\n")
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "| check | count | must be 0 |\n|---|---|---|\n")
	row := func(name string, n int, must bool) {
		m := ""
		if must {
			m = "yes"
		}
		fmt.Fprintf(&b, "| %s | %d | %s |\n", name, n, m)
	}
	row("acked but missing", r.AckedMissing, true)
	row("two values at one offset", r.ConflictingOffsets, true)
	row("gaps in the committed offsets", r.Gaps, true)
	row("records read that were never sent", r.NeverSent, true)
	row("consumer-group offsets going backwards", r.GroupBackwards, true)
	row("committed objects deleted", r.DeletedCommitted, true)
	row("values at two offsets (retries after an unknown outcome)", r.Duplicates, false)
	row("values sent", r.Sent, false)
	row("records acked", r.Acked, false)
	row("records in the final read", r.Records, false)
	row("records read by followers and the group", r.ReaderRead, false)
	row("objects written", o.Seen, false)
	row("objects indexed at the end", o.Indexed, false)
	row("orphans deleted by the sweeper", o.Deleted, false)
	row("orphans left (in their grace period)", o.Orphans, false)

	byKind := map[string][]time.Duration{}
	for _, u := range outages {
		byKind[u.Fault] = append(byKind[u.Fault], u.Window)
	}
	fmt.Fprintf(&b, "\n| fault | injected | longest partition silence: median | max |\n|---|---|---|---|\n")
	kinds := append([]string(nil), faultKinds...)
	sort.Strings(kinds)
	for _, k := range kinds {
		ws := byKind[k]
		if len(ws) == 0 {
			continue
		}
		sort.Slice(ws, func(i, j int) bool { return ws[i] < ws[j] })
		fmt.Fprintf(&b, "| %s | %d | %.1f s | %.1f s |\n", k, len(ws), ws[len(ws)/2].Seconds(), ws[len(ws)-1].Seconds())
	}
	return b.String()
}
