package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/streamhouse/streamhouse/actors"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway"
	"github.com/streamhouse/streamhouse/gateway/grpcmem"
	"github.com/streamhouse/streamhouse/gateway/kafka"
	"github.com/streamhouse/streamhouse/gateway/membudget"
	"github.com/streamhouse/streamhouse/segmentstore/sweeper"
)

// runCommand parses a subcommand's flags, builds its logger and runs it until SIGINT or
// SIGTERM. Exit codes: 0 done, 1 failed, 2 bad flags.
func runCommand[F any](name string, args []string, stderr io.Writer,
	parse func([]string, io.Writer) (F, error), logging func(F) (level, format string),
	run func(context.Context, F, *zap.Logger) error) int {
	f, err := parse(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "streamhouse %s: %v\n", name, err)
		return 2
	}
	log, err := newLogger(logging(f))
	if err != nil {
		fmt.Fprintf(stderr, "streamhouse %s: %v\n", name, err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f, log); err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			// SIGINT or SIGTERM while it started (a stop that fails after it has
			// started is an error of its own, not cancellation): what was asked.
			log.Info(name+" stopped before it had started", zap.Error(err))
			return 0
		}
		// Logged without a stack trace, which says nothing an operator needs, then
		// said plainly.
		log.WithOptions(zap.AddStacktrace(zapcore.FatalLevel)).Error(name+" failed", zap.Error(err))
		fmt.Fprintf(stderr, "streamhouse %s: %v\n", name, err)
		return 1
	}
	return 0
}

// etcdTimeout bounds dialling etcd and each call of the readiness probe.
const etcdTimeout = 5 * time.Second

// startTimeout, with the session TTL on top (a restart after a crash waits out its old
// session), bounds an agent's start: etcd answering, the store checked, the metadata
// loaded, the session and the node started.
const startTimeout = 30 * time.Second

// awaitEtcd returns once etcd answers a read, saying every etcdTimeout that it waits, or
// ctx's end with what etcd last answered: the client dials without waiting, so an etcd
// that is not there shows only as calls that hang.
func awaitEtcd(ctx context.Context, etcd *clientv3.Client, endpoints, root string, log *zap.Logger) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, etcdTimeout)
		_, err := etcd.Get(cctx, root, clientv3.WithCountOnly()) // one key, the cluster's root
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("etcd %s did not answer: %w (last: %v)", endpoints, ctx.Err(), err)
		}
		log.Warn("waiting for etcd", zap.String("endpoints", endpoints), zap.Error(err))
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// dialEtcd returns an etcd client whose calls are counted in the agent's metrics.
func dialEtcd(endpoints []string) (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: etcdTimeout, Logger: zap.NewNop(),
		// A member that stops answering with its connection open (frozen, or cut by a
		// black-holing network) is declared dead after keepalive time + timeout, its
		// pending calls fail and are retried on the others. etcd refuses pings more
		// often than every 5s (--grpc-keepalive-min-time).
		DialKeepAliveTime: 5 * time.Second, DialKeepAliveTimeout: 3 * time.Second,
		DialOptions: coordination.DialOptions()})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	return c, nil
}

// watchedMirror loads the metadata mirror and keeps it current until stop is called.
func watchedMirror(ctx context.Context, coord *coordination.Client) (m *coordination.Mirror, stop func(), err error) {
	m = coord.NewMirror()
	if err := m.Load(ctx); err != nil {
		return nil, nil, fmt.Errorf("load metadata from etcd: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Watch(wctx) }()
	return m, func() { cancel(); <-done }, nil
}

// runSweeper sweeps every interval while node's session lives (one agent of the
// cluster at a time: sweeper.Sweeper.Run), and purges a deleted topic as soon as mirror
// shows its partitions stopped, until stop is called, which waits for a sweep under way
// to end.
func runSweeper(ctx context.Context, sw *sweeper.Sweeper, node *actors.Node, mirror *coordination.Mirror) (stop func()) {
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { sw.Run(sctx, node.Session) })
	wg.Go(func() { sw.PurgeOnStop(sctx, mirror, purgeCheckPause) })
	return func() { cancel(); wg.Wait() }
}

// purgeCheckPause is the least time between two looks of PurgeOnStop at the mirror.
const purgeCheckPause = 250 * time.Millisecond

// streamWorkers is the client API's gRPC stream workers (serveAPI).
const streamWorkers = 128

// listen opens what's listener on addr. The agent opens its listeners before it joins
// the cluster: one that cannot open (a port in use) must fail the start before the
// agent's session and membership are written, and taken back, in etcd.
func listen(what, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s on %q: %w", what, addr, err)
	}
	return lis, nil
}

// listenAPIAndAdmin opens the client API's and the admin HTTP's listeners, or neither.
func listenAPIAndAdmin(apiAddr, adminAddr string) (api, admin net.Listener, err error) {
	if api, err = listen("client API", apiAddr); err != nil {
		return nil, nil, err
	}
	if admin, err = listen("admin HTTP", adminAddr); err != nil {
		_ = api.Close()
		return nil, nil, err
	}
	return api, admin, nil
}

// Keepalive of the client API. A client may ping every 10 s, with or without streams
// (gRPC's default, 5 minutes, answered a client pinging more often, as an idle
// Subscribe's client must to keep a proxy from cutting it, with GOAWAY too_many_pings,
// ending every stream of the connection); the agent pings a connection quiet for 30 s,
// and closes it if no answer comes in 10 s (a client gone without closing its streams
// held their reads for gRPC's default of two hours).
var (
	apiKeepaliveEnforcement = keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}
	apiKeepalive            = keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}
)

// apiServerOptions are the client API's gRPC server options for limits.
func apiServerOptions(limits gateway.Limits) []grpc.ServerOption {
	return append([]grpc.ServerOption{grpc.MaxRecvMsgSize(limits.MaxMessageBytes()), grpc.MaxSendMsgSize(limits.MaxMessageBytes()),
		grpc.NumStreamWorkers(streamWorkers),
		grpc.KeepaliveEnforcementPolicy(apiKeepaliveEnforcement), grpc.KeepaliveParams(apiKeepalive)},
		append(grpcmem.ServerOptions(), gateway.Interceptors()...)...)
}

// serveAPI serves the client API on lis through node; served reports when it stops.
// api.Stopping is to be called as the agent starts to stop.
func serveAPI(lis net.Listener, coord *coordination.Client, mirror *coordination.Mirror, node *actors.Node,
	limits gateway.Limits, reads *membudget.Budget, log *zap.Logger) (srv *grpc.Server, api *gateway.Server, served <-chan error) {
	// Stream workers: requests run on goroutines that outlive one, whose stacks have
	// grown already (a fresh goroutine per request grew its stack by copying on every
	// produce; docs/BENCHMARKS.md, profiling item 17). A produce request waits for its
	// commit, so the workers are as many as the requests commonly in flight; beyond them
	// gRPC starts a goroutine per request as before.
	srv = grpc.NewServer(apiServerOptions(limits)...)
	api = gateway.NewServer(coord, mirror, node, limits, reads, log)
	api.Register(srv)
	ch := make(chan error, 1)
	go func() { ch <- srv.Serve(lis) }()
	return srv, api, ch
}

// listenKafka opens the Kafka listener on addr ("" or "off": none) and returns it with the
// host:port to advertise: advertise if set, else the listener's port on advertiseHost.
func listenKafka(addr, advertise, advertiseHost string) (net.Listener, string, error) {
	if addr == "" || addr == "off" {
		return nil, "", nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("Kafka listener on %q: %w", addr, err)
	}
	if advertise == "" {
		advertise = net.JoinHostPort(advertiseHost, strconv.Itoa(lis.Addr().(*net.TCPAddr).Port))
	}
	return lis, advertise, nil
}

// serveKafka serves the Kafka protocol on lis (nil: none) through node; stop closes it.
func serveKafka(lis net.Listener, coord *coordination.Client, mirror *coordination.Mirror, node *actors.Node,
	opts kafka.Options) (stop func()) {
	if lis == nil {
		return func() {}
	}
	log := opts.Log
	srv := kafka.NewServer(coord, mirror, node, opts)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil {
			log.Error("Kafka listener stopped", zap.Error(err))
		}
	}()
	return func() { _ = srv.Close(); <-done }
}
