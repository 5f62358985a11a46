package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/actors"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway"
	"github.com/streamhouse/streamhouse/gateway/kafka"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/segmentstore/sweeper"
)

type devFlags struct {
	data        string
	agents      int
	grpcListen  string
	kafkaListen string
	etcdListen  string
	adminListen string
	logLevel    string
	sweep       time.Duration // --sweep-interval
}

func parseDevFlags(args []string, stderr io.Writer) (*devFlags, error) {
	f := &devFlags{}
	fs := flag.NewFlagSet("streamhouse dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.data, "data", "./data", "directory for the embedded etcd (data/etcd) and the segments (data/segments); kept across restarts")
	fs.IntVar(&f.agents, "agents", 1, "number of agents in this process")
	fs.StringVar(&f.grpcListen, "grpc-listen", "127.0.0.1:50051", "address of the client gRPC API")
	fs.StringVar(&f.kafkaListen, "kafka-listen", "127.0.0.1:9092", "address of the Kafka protocol listener (\"off\": none)")
	fs.StringVar(&f.etcdListen, "etcd-listen", "127.0.0.1:2379", "client address of the embedded etcd, for etcdctl")
	fs.StringVar(&f.adminListen, "admin-listen", "127.0.0.1:9100", "address of /metrics, /healthz, /readyz and /debug/pprof/")
	fs.StringVar(&f.logLevel, "log-level", "warn", "debug, info, warn or error")
	fs.DurationVar(&f.sweep, "sweep-interval", sweeper.DefaultGrace/4, fmt.Sprintf("time between orphan sweeps, which delete unindexed segment files older than %v (a deleted topic is purged, and its name free, as soon as its partitions stop)", sweeper.DefaultGrace))
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if f.agents < 1 || f.agents > 16 {
		return nil, fmt.Errorf("--agents %d: want 1..16", f.agents)
	}
	if f.sweep <= 0 {
		return nil, fmt.Errorf("--sweep-interval %s: want more than 0", f.sweep)
	}
	return f, nil
}

// runDev runs a whole cluster in one process: an embedded etcd (the real server), a local
// file store and N agents, with the client API on one address.
func runDev(args []string, stdout, stderr io.Writer) int {
	return runCommand("dev", args, stderr, parseDevFlags,
		func(f *devFlags) (string, string) { return f.logLevel, "console" },
		func(ctx context.Context, f *devFlags, log *zap.Logger) error { return dev(ctx, f, stdout, log) })
}

func dev(ctx context.Context, f *devFlags, stdout io.Writer, log *zap.Logger) error {
	if err := os.MkdirAll(f.data, 0o755); err != nil {
		return fmt.Errorf("--data %s: %w", f.data, err)
	}
	// The client API and admin listeners first: a port in use fails the start before
	// anything runs (the Kafka listener's below, before any agent).
	lis, adminLis, err := listenAPIAndAdmin(f.grpcListen, f.adminListen)
	if err != nil {
		return err
	}
	// Once served, closed by their servers; a second Close does nothing.
	defer lis.Close()
	defer adminLis.Close()
	etcdURL, err := url.Parse("http://" + f.etcdListen)
	if err != nil {
		return fmt.Errorf("--etcd-listen %q: %w", f.etcdListen, err)
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	peerURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", peerPort))
	cfg := embed.NewConfig()
	cfg.Name = "dev"
	cfg.Dir = filepath.Join(f.data, "etcd")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*etcdURL}, []url.URL{*etcdURL}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peerURL}, []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	// As in compose: keep a minute of history (watchers resume within it) and let the
	// backend reuse the rest, so the database stays flat while merges rewrite keys.
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = "periodic", "1m"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("embedded etcd on %s: %w", f.etcdListen, err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		return errors.New("embedded etcd did not become ready in 30s")
	}
	etcd, err := dialEtcd([]string{f.etcdListen})
	if err != nil {
		return err
	}
	defer etcd.Close()
	coord, err := coordination.New(etcd, coordination.Options{Logger: log})
	if err != nil {
		return err
	}
	fileStore, err := objstore.OpenFile(filepath.Join(f.data, "segments"))
	if err != nil {
		return fmt.Errorf("--data %s: %w", f.data, err)
	}
	if err := fileStore.Check(ctx); err != nil { // writable, as the agent checks its store
		return fmt.Errorf("--data %s: %w", f.data, err)
	}
	store := objstore.Instrument(fileStore)
	mirror, stopMirror, err := watchedMirror(ctx, coord)
	if err != nil {
		return err
	}
	defer stopMirror()

	var nodes []*actors.Node
	defer func() {
		for _, n := range nodes {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_ = n.Stop(sctx)
			cancel()
		}
	}()
	// The first agent serves the Kafka protocol for all: it is the only broker Kafka
	// clients see.
	kafkaLis, kafkaAddr, err := listenKafka(f.kafkaListen, "", "127.0.0.1")
	if err != nil {
		return err
	}
	var first coordination.NodeInfo
	for i := range f.agents {
		info := coordination.NodeInfo{Node: fmt.Sprintf("dev-%d", i+1), Zone: "local", Addr: f.grpcListen}
		if i == 0 {
			info.Kafka = kafkaAddr
			first = info
		}
		n, err := actors.StartNode(ctx, coord, store, mirror, actors.NodeConfig{Info: info, Log: log})
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	reads := gateway.NewReadBudget(0)
	srv, api, _ := serveAPI(lis, coord, mirror, nodes[0], gateway.Limits{}, reads, log)
	defer srv.Stop()
	defer api.Stopping() // first: Subscribe streams end rather than hold the stop
	defer serveKafka(kafkaLis, coord, mirror, nodes[0], kafka.Options{Self: first, Reads: reads, Log: log})()
	// One process serves every agent's partitions: its lag collector exports them all.
	admin, err := serveAdmin(adminLis, coord, store, nodes[0], reads, gateway.NewLagCollector(coord, mirror, "", log), log)
	if err != nil {
		return err
	}
	defer admin.Close()
	// As every agent does: deleted topics are purged, and what no segment names goes.
	sw, err := sweeper.New(coord, store, sweeper.Options{Interval: f.sweep, Log: log})
	if err != nil {
		return err
	}
	defer runSweeper(ctx, sw, nodes[0], mirror)()

	abs, _ := filepath.Abs(f.data)
	fmt.Fprintf(stdout, `StreamHouse dev cluster running (%d agent(s), Ctrl-C to stop; data kept in %s)
  client API (gRPC)  %s
  Kafka protocol     %s   (kcat -b %s -L)
  metrics, health    http://%s/metrics  /healthz  /readyz
  etcd               %s   (./bin/etcdctl --endpoints %s get --prefix /streamhouse/; make tools builds it)
  segments           %s

Try, in another terminal:
  export STREAMHOUSE_ADDR=%s
  ./bin/streamctl topic create orders --partitions 4
  ./bin/streamctl produce orders --key customer-1 '{"id": 1}' '{"id": 2}'
  ./bin/streamctl consume orders --from earliest --limit 10
  ./bin/streamctl cluster status
`, len(nodes), abs, lis.Addr(), orOff(kafkaAddr), orOff(kafkaAddr), f.adminListen, f.etcdListen, f.etcdListen, store, lis.Addr())
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping: partitions commit what they accepted, then the agents leave")
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func orOff(addr string) string {
	if addr == "" {
		return "off"
	}
	return addr
}
