package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/streamhouse/streamhouse/actors"
	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway"
	"github.com/streamhouse/streamhouse/gateway/kafka"
	"github.com/streamhouse/streamhouse/segmentstore"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/segmentstore/sweeper"
)

// agentFlags are the agent's settings. Every flag can also be set by the environment
// variable named in its help; a flag on the command line wins.
type agentFlags struct {
	node, zone        string
	etcd, etcdRoot    string
	store             string
	listen, advertise string
	grpcListen        string
	kafkaListen       string
	kafkaAdvertise    string
	kafkaMaxRequest   int
	kafkaMaxQueued    int
	kafkaFrameTimeout time.Duration
	kafkaIdleTimeout  time.Duration
	kafkaGroupMembers int
	adminListen       string
	limits            gateway.Limits
	memory            memoryFlags
	sessionTTL        time.Duration
	compactInterval   time.Duration
	mergeLinkBytes    int
	sweep             sweeper.Options
	logLevel, logFmt  string
	shutdownTimeout   time.Duration
}

// memoryFlags bound an agent's memory whatever its partition count (see actors.NodeConfig).
type memoryFlags struct {
	cacheBytes, pendingBytes, recentBytes, readBytes, uploads int
	limit                                                     int
}

// memoryHeadroom is what the default --memory-limit allows above the four budgets:
// request and segment buffers, gRPC, merges, the actor system and the runtime itself.
const memoryHeadroom = 128 << 20

// apiDrain is how long a stopping agent's client API waits for its calls in flight once
// its partitions are handed over, before it closes the connections left.
const apiDrain = 5 * time.Second

// BucketEnv names the original StreamHouse's bucket variable: without --store (or
// $STREAMHOUSE_STORE_URL), the store is s3://$STREAMHOUSE_BUCKET, at $AWS_ENDPOINT_URL.
const BucketEnv = "STREAMHOUSE_BUCKET"

// apply sets the Go runtime's soft memory limit (unless GOMEMLIMIT is set), so that the
// garbage collector works harder rather than letting the heap double past the budgets.
func (m memoryFlags) apply() int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	limit := int64(m.limit)
	if limit == 0 {
		limit = int64(m.cacheBytes+m.pendingBytes+m.recentBytes+m.readBytes) + memoryHeadroom
	}
	debug.SetMemoryLimit(limit)
	return limit
}

func parseAgentFlags(args []string, stderr io.Writer) (*agentFlags, error) {
	host, _ := os.Hostname()
	f := &agentFlags{}
	fs := flag.NewFlagSet("streamhouse agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	str := func(p *string, name, env, def, help string) {
		if v := os.Getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, help+" ($"+env+")")
	}
	// A variable that does not parse is an error, as the flag's would be: not its
	// default, silently.
	var envErrs []error
	fromEnv := func(env string, parse func(string) error) {
		if v := os.Getenv(env); v != "" {
			if err := parse(v); err != nil {
				envErrs = append(envErrs, fmt.Errorf("$%s=%q: %w", env, v, err))
			}
		}
	}
	dur := func(p *time.Duration, name, env string, def time.Duration, help string) {
		fromEnv(env, func(v string) (err error) { def, err = time.ParseDuration(v); return err })
		fs.DurationVar(p, name, def, help+" ($"+env+")")
	}
	str(&f.node, "node", "STREAMHOUSE_NODE", host, "agent name, unique in the cluster: 1-128 of a-z A-Z 0-9 . _ -; a name a running agent holds is refused, one whose agent died is taken back once its session expires (--session-ttl)")
	str(&f.zone, "zone", "STREAMHOUSE_ZONE", "", "availability zone of this agent")
	str(&f.etcd, "etcd", "STREAMHOUSE_ETCD_ENDPOINTS", "127.0.0.1:2379", "comma-separated etcd endpoints")
	str(&f.etcdRoot, "etcd-root", "STREAMHOUSE_ETCD_ROOT", coordination.DefaultRoot, "key prefix of this cluster in etcd")
	str(&f.store, "store", "STREAMHOUSE_STORE_URL", "", "object store URL: s3://bucket/prefix?endpoint=... or file:///dir (required; $"+BucketEnv+" alone is s3://$"+BucketEnv+")")
	str(&f.listen, "cluster-listen", "STREAMHOUSE_CLUSTER_LISTEN", "0.0.0.0:8090", "address the agent-to-agent gRPC remote listens on")
	str(&f.advertise, "cluster-advertise", "STREAMHOUSE_CLUSTER_ADVERTISE", "", "host:port other agents dial (default: the listen address, with this host's name for 0.0.0.0)")
	str(&f.grpcListen, "grpc-listen", "STREAMHOUSE_GRPC_LISTEN", ":50051", "address the client gRPC API (streamhouse.v1) listens on")
	str(&f.kafkaListen, "kafka-listen", "STREAMHOUSE_KAFKA_LISTEN", kafka.DefaultAddr, "address the Kafka protocol listener listens on (\"off\": no Kafka listener)")
	str(&f.kafkaAdvertise, "kafka-advertise", "STREAMHOUSE_KAFKA_ADVERTISE", "", "host:port Kafka clients dial for this agent (default: the --cluster-advertise host with the Kafka port)")
	str(&f.adminListen, "admin-listen", "STREAMHOUSE_ADMIN_LISTEN", ":9100", "address of /metrics, /healthz, /readyz and /debug/pprof/")
	intFlag := func(p *int, name, env string, def int, help string) {
		fromEnv(env, func(v string) (err error) { def, err = strconv.Atoi(v); return err })
		fs.IntVar(p, name, def, help+" ($"+env+")")
	}
	intFlag(&f.kafkaMaxRequest, "kafka-max-request-bytes", "STREAMHOUSE_KAFKA_MAX_REQUEST_BYTES", kafka.DefaultMaxFrameBytes, "largest Kafka request (Kafka's socket.request.max.bytes), and half of what the records of one produce may hold decoded; a larger one closes its connection")
	dur(&f.kafkaIdleTimeout, "kafka-idle-timeout", "STREAMHOUSE_KAFKA_IDLE_TIMEOUT", kafka.DefaultIdleTimeout, "close a Kafka connection that sends no request for this long (Kafka's connections.max.idle.ms)")
	dur(&f.kafkaFrameTimeout, "kafka-frame-timeout", "STREAMHOUSE_KAFKA_FRAME_TIMEOUT", kafka.DefaultFrameTimeout, "how long a Kafka request frame may take to arrive once its size is read; past it the connection closes and the frame's queued bytes go back")
	intFlag(&f.kafkaGroupMembers, "kafka-max-group-members", "STREAMHOUSE_KAFKA_MAX_GROUP_MEMBERS", kafka.DefaultMaxGroupMembers, "members of one Kafka consumer group (Kafka's group.max.size); a join past it is refused GROUP_MAX_SIZE_REACHED")
	intFlag(&f.kafkaMaxQueued, "kafka-max-queued-bytes", "STREAMHOUSE_KAFKA_MAX_QUEUED_BYTES", kafka.DefaultMaxQueuedBytes, "Kafka request frames read and not yet answered, over all connections (Kafka's queued.max.request.bytes); beyond it a connection's next frame waits to be read. What produce requests' records decode to beyond their frames counts too, up to twice it; past that a partition's records are answered REQUEST_TIMED_OUT")
	intFlag(&f.limits.MaxRecordBytes, "max-record-bytes", "STREAMHOUSE_MAX_RECORD_BYTES", 1<<20, fmt.Sprintf("largest record (key + value + headers, each header counting %d bytes more) accepted", partitionpb.HeaderOverhead))
	intFlag(&f.limits.MaxBatchBytes, "max-batch-bytes", "STREAMHOUSE_MAX_BATCH_BYTES", 16<<20, "largest produce request, in record bytes")
	intFlag(&f.limits.MaxBatchRecords, "max-batch-records", "STREAMHOUSE_MAX_BATCH_RECORDS", 100000, "most records in one produce request")
	intFlag(&f.limits.MaxFetchBytes, "max-fetch-bytes", "STREAMHOUSE_MAX_FETCH_BYTES", 16<<20, "most record bytes one fetch returns")
	intFlag(&f.memory.cacheBytes, "cache-bytes", "STREAMHOUSE_CACHE_BYTES", actors.DefaultCacheBytes, "memory for segment blocks read from the store, shared by all partitions")
	intFlag(&f.memory.pendingBytes, "max-pending-bytes", "STREAMHOUSE_MAX_PENDING_BYTES", actors.DefaultMaxPendingBytes, "records accepted and not yet acked (their bytes and 88 bytes each), and their segments until written, over all partitions; beyond it produce answers ResourceExhausted")
	intFlag(&f.memory.recentBytes, "recent-bytes", "STREAMHOUSE_RECENT_BYTES", actors.DefaultRecentBytes, "committed records kept in memory for tail reads, over all partitions")
	intFlag(&f.memory.readBytes, "max-read-bytes", "STREAMHOUSE_MAX_READ_BYTES", gateway.DefaultMaxReadBytes, "answers to fetches (gRPC and Kafka) from before their read until written to their clients, over all connections; beyond it a fetch waits, up to 10s, then answers ResourceExhausted (Kafka: a throttle); a budget of its own of this size holds what this agent's partitions' reads take from the store until their answers are handed on, whether or not their fetches still wait (a read starts once its first piece the cache does not hold whole fits, waiting up to 5s, then its fetch answers ResourceExhausted)")
	intFlag(&f.memory.limit, "memory-limit", "STREAMHOUSE_MEMORY_LIMIT", 0, "soft limit of the agent's Go memory in bytes (0: the four budgets above + 128 MiB; $GOMEMLIMIT wins)")
	intFlag(&f.memory.uploads, "max-uploads", "STREAMHOUSE_MAX_UPLOADS", actors.DefaultMaxUploads, "concurrent object PUTs of the agent (one more starts once the last has run 50 ms, or at once when 2 MiB of segments waits); segments of all partitions waiting for one share the next object")
	dur(&f.sessionTTL, "session-ttl", "STREAMHOUSE_SESSION_TTL", coordination.DefaultSessionTTL, "etcd session TTL: how long a silent agent keeps its partitions")
	dur(&f.sweep.Grace, "sweep-grace", "STREAMHOUSE_SWEEP_GRACE", sweeper.DefaultGrace, fmt.Sprintf("orphan objects (named by no segment of the index) are deleted once older than this and unindexed this long; at least %v, 0 disables the sweeper", sweeper.MinGrace))
	dur(&f.sweep.Interval, "sweep-interval", "STREAMHOUSE_SWEEP_INTERVAL", 0, "time between orphan sweeps (0: a quarter of --sweep-grace); one agent sweeps at a time")
	dur(&f.compactInterval, "compact-interval", "STREAMHOUSE_COMPACT_INTERVAL", actors.DefaultCompactInterval, "how often the agent applies retention to its partitions and merges their small segments (0: the default; negative: never)")
	intFlag(&f.mergeLinkBytes, "merge-link-bytes", "STREAMHOUSE_MERGE_LINK_BYTES", actors.DefaultMergeLinkBytes, "a merge of segments each stored in at least this many bytes lists them where they are instead of copying them (0: merges always copy; docs/operations.md)")
	str(&f.logLevel, "log-level", "STREAMHOUSE_LOG_LEVEL", "info", "debug, info, warn or error")
	str(&f.logFmt, "log-format", "STREAMHOUSE_LOG_FORMAT", "json", "json or console")
	dur(&f.shutdownTimeout, "shutdown-timeout", "STREAMHOUSE_SHUTDOWN_TIMEOUT", 30*time.Second, "how long a graceful stop may take")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if len(envErrs) > 0 {
		return nil, errors.Join(envErrs...)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if f.store == "" {
		// The original StreamHouse's variable: a bucket at AWS_ENDPOINT_URL (or AWS's own).
		if b := os.Getenv(BucketEnv); b != "" {
			f.store = "s3://" + b
		} else {
			return nil, fmt.Errorf("--store (or $STREAMHOUSE_STORE_URL, or $%s for s3://BUCKET at $AWS_ENDPOINT_URL) is required", BucketEnv)
		}
	}
	if f.kafkaMaxRequest < f.limits.MaxBatchBytes {
		return nil, fmt.Errorf("--kafka-max-request-bytes %d: at least --max-batch-bytes (%d)", f.kafkaMaxRequest, f.limits.MaxBatchBytes)
	}
	if f.kafkaMaxQueued < kafka.MinQueuedBytes {
		return nil, fmt.Errorf("--kafka-max-queued-bytes %d: at least %d", f.kafkaMaxQueued, kafka.MinQueuedBytes)
	}
	if f.memory.readBytes < gateway.MinReadBytes {
		return nil, fmt.Errorf("--max-read-bytes %d: at least %d", f.memory.readBytes, gateway.MinReadBytes)
	}
	if f.limits.MaxRecordBytes <= 0 || f.limits.MaxBatchBytes < f.limits.MaxRecordBytes || f.limits.MaxBatchRecords <= 0 || f.limits.MaxFetchBytes <= 0 {
		return nil, errors.New("request limits must be positive, and --max-batch-bytes at least --max-record-bytes")
	}
	if f.limits.MaxRecordBytes > segmentstore.MaxRecordBytes {
		// A record fills one block of a segment, and readers refuse larger blocks.
		return nil, fmt.Errorf("--max-record-bytes %d: at most %d, the largest record a segment block holds", f.limits.MaxRecordBytes, segmentstore.MaxRecordBytes)
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"--cache-bytes", f.memory.cacheBytes}, {"--max-pending-bytes", f.memory.pendingBytes},
		{"--recent-bytes", f.memory.recentBytes}, {"--max-uploads", f.memory.uploads}} {
		if c.v <= 0 {
			return nil, fmt.Errorf("%s %d: must be positive", c.name, c.v)
		}
	}
	switch {
	case f.memory.limit < 0:
		return nil, fmt.Errorf("--memory-limit %d: 0 (the budgets + %d MiB) or more", f.memory.limit, memoryHeadroom>>20)
	case f.mergeLinkBytes < 0:
		return nil, fmt.Errorf("--merge-link-bytes %d: 0 (merges always copy) or more", f.mergeLinkBytes)
	case f.shutdownTimeout <= 0:
		return nil, fmt.Errorf("--shutdown-timeout %s: must be positive", f.shutdownTimeout)
	case f.kafkaFrameTimeout <= 0:
		return nil, fmt.Errorf("--kafka-frame-timeout %s: must be positive", f.kafkaFrameTimeout)
	case f.kafkaIdleTimeout <= 0:
		return nil, fmt.Errorf("--kafka-idle-timeout %s: must be positive", f.kafkaIdleTimeout)
	case f.kafkaGroupMembers < 1:
		return nil, fmt.Errorf("--kafka-max-group-members %d: must be positive", f.kafkaGroupMembers)
	case f.limits.MaxFetchBytes > math.MaxInt32:
		// Kafka's fetch sizes are int32: more would wrap negative.
		return nil, fmt.Errorf("--max-fetch-bytes %d: at most %d", f.limits.MaxFetchBytes, math.MaxInt32)
	case f.sweep.Grace != 0 && f.sweep.Grace < sweeper.MinGrace:
		return nil, fmt.Errorf("--sweep-grace %s: 0 or at least %s", f.sweep.Grace, sweeper.MinGrace)
	case f.sweep.Interval < 0:
		return nil, fmt.Errorf("--sweep-interval %s: 0 (a quarter of the grace) or more", f.sweep.Interval)
	case !coordination.ValidNodeName(f.node):
		return nil, fmt.Errorf("--node %q: want 1-128 characters of a-z A-Z 0-9 . _ -", f.node)
	}
	if f.sessionTTL < time.Second {
		return nil, fmt.Errorf("--session-ttl %s: at least 1s", f.sessionTTL)
	}
	// What the user gave; the default below is derived from --cluster-listen.
	for _, a := range []struct{ flag, addr string }{{"--cluster-advertise", f.advertise}, {"--kafka-advertise", f.kafkaAdvertise}} {
		if err := checkAdvertised(a.addr); a.addr != "" && err != nil {
			return nil, fmt.Errorf("%s %q: %w", a.flag, a.addr, err)
		}
	}
	if f.advertise == "" {
		h, p, err := actors.SplitHostPort(f.listen)
		if err != nil {
			return nil, fmt.Errorf("--cluster-listen %q: %w", f.listen, err)
		}
		if wildcard(h) {
			h = host
		}
		f.advertise = net.JoinHostPort(h, strconv.Itoa(p))
	}
	return f, nil
}

// checkAdvertised checks an address other agents or clients are told to dial: a host and
// a port they can dial (Kafka clients would be told of no broker, and a cluster peer
// could not be reached, only once they tried).
func checkAdvertised(addr string) error {
	h, p, err := actors.SplitHostPort(addr)
	switch {
	case err != nil:
		return fmt.Errorf("want host:port: %w", err)
	case wildcard(h):
		return errors.New("want a host others can dial, not none or a wildcard")
	case p == 0:
		return errors.New("want a port of 1-65535")
	}
	return nil
}

// wildcard says whether a listen host is none or every address, which no one can dial.
func wildcard(host string) bool { return host == "" || host == "0.0.0.0" || host == "::" }

func newLogger(level, format string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console":
		cfg = zap.NewDevelopmentConfig()
	default:
		return nil, fmt.Errorf("--log-format %q: want json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	return cfg.Build()
}

// runAgent runs an agent until SIGINT or SIGTERM, then leaves the cluster gracefully.
func runAgent(args []string, stderr io.Writer) int {
	return runCommand("agent", args, stderr, parseAgentFlags,
		func(f *agentFlags) (string, string) { return f.logLevel, f.logFmt }, agent)
}

func agent(ctx context.Context, f *agentFlags, log *zap.Logger) error {
	// The session and the node add node and zone to what they log themselves.
	alog := log.With(zap.String("node", f.node), zap.String("zone", f.zone))
	memLimit := f.memory.apply()
	etcd, err := dialEtcd(strings.Split(f.etcd, ","))
	if err != nil {
		return err
	}
	defer etcd.Close()
	coord, err := coordination.New(etcd, coordination.Options{Root: f.etcdRoot, Logger: log})
	if err != nil {
		return err
	}
	// Plus the session TTL: a restart after a crash waits for its old session to expire.
	startCtx, cancel := context.WithTimeout(ctx, startTimeout+f.sessionTTL)
	defer cancel()
	if err := awaitEtcd(startCtx, etcd, f.etcd, coord.Keys().Root(), alog); err != nil {
		return err
	}
	store, err := objstore.Open(startCtx, f.store)
	if err != nil {
		return err
	}
	store = objstore.Instrument(store)
	if err := store.Check(startCtx); err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	mirror, stopMirror, err := watchedMirror(startCtx, coord)
	if err != nil {
		return err
	}
	defer stopMirror()

	host, port, err := actors.SplitHostPort(f.listen)
	if err != nil {
		return fmt.Errorf("--cluster-listen %q: %w", f.listen, err)
	}
	advHost, _, _ := actors.SplitHostPort(f.advertise)
	if port != 0 { // the cluster's listener opens in StartNode: a port in use fails there late
		probe, err := listen("cluster", f.listen)
		if err != nil {
			return err
		}
		_ = probe.Close()
	}
	var sw *sweeper.Sweeper
	if f.sweep.Grace > 0 {
		opts := f.sweep
		opts.Log = alog
		if sw, err = sweeper.New(coord, store, opts); err != nil {
			return err
		}
	}
	apiLis, adminLis, err := listenAPIAndAdmin(f.grpcListen, f.adminListen)
	if err != nil {
		return err
	}
	// Once served, closed by their servers; a second Close does nothing.
	defer apiLis.Close()
	defer adminLis.Close()
	kafkaLis, kafkaAddr, err := listenKafka(f.kafkaListen, f.kafkaAdvertise, advHost)
	if err != nil {
		return err
	}
	info := coordination.NodeInfo{Node: f.node, Zone: f.zone, Addr: f.advertise, Kafka: kafkaAddr}
	node, err := actors.StartNode(startCtx, coord, store, mirror, actors.NodeConfig{
		Info:       info,
		ListenHost: host, ListenPort: port, AdvertisedHost: f.advertise,
		SessionTTL: f.sessionTTL, Log: log,
		CacheBytes: int64(f.memory.cacheBytes), MaxPendingBytes: int64(f.memory.pendingBytes),
		RecentBytes: int64(f.memory.recentBytes), MaxUploads: f.memory.uploads, CompactInterval: f.compactInterval,
		HistoryReadBytes: int64(f.memory.readBytes),
		MergeLinkBytes:   mergeLinkBytes(f.mergeLinkBytes),
	})
	if err != nil {
		if kafkaLis != nil {
			_ = kafkaLis.Close()
		}
		return err
	}
	reads := gateway.NewReadBudget(f.memory.readBytes)
	srv, api, served := serveAPI(apiLis, coord, mirror, node, f.limits, reads, alog)
	stopKafka := serveKafka(kafkaLis, coord, mirror, node, kafka.Options{Self: info, Limits: f.limits, MaxFrameBytes: f.kafkaMaxRequest, MaxQueuedBytes: f.kafkaMaxQueued,
		FrameTimeout: f.kafkaFrameTimeout, IdleTimeout: f.kafkaIdleTimeout, MaxGroupMembers: f.kafkaGroupMembers, Reads: reads, Log: alog})
	admin, err := serveAdmin(adminLis, coord, store, node, reads, gateway.NewLagCollector(coord, mirror, f.node, alog), alog)
	if err != nil {
		srv.Stop()
		stopKafka()
		_ = node.Stop(context.Background())
		return err
	}
	defer admin.Close()
	if sw != nil {
		defer runSweeper(ctx, sw, node, mirror)()
	}
	alog.Info("agent running", zap.String("store", store.String()), zap.String("etcd", f.etcd), zap.String("cluster", f.advertise),
		zap.String("grpc", apiLis.Addr().String()), zap.String("kafka", kafkaAddr), zap.Int64("memory_limit", memLimit))
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		alog.Error("gRPC server stopped", zap.Error(serveErr))
		serveErr = fmt.Errorf("client API: %w", serveErr)
	}
	alog.Info("stopping: releasing local partitions, then leaving the cluster")
	stopCtx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	// Partitions hand over first, while the API still answers (its retries find the new
	// owners); then in-flight calls finish. Subscribe streams end at once: their clients
	// subscribe again through another agent.
	api.Stopping()
	err = node.Stop(stopCtx)
	stopKafka()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	// Calls in flight finish; a stream still open after apiDrain (a health watch, an idle
	// ProduceStream) is closed, its client to reconnect elsewhere: it would hold the stop
	// until the shutdown timeout.
	drain := time.NewTimer(apiDrain)
	defer drain.Stop()
	select {
	case <-stopped:
	case <-drain.C:
		srv.Stop()
	case <-stopCtx.Done():
		srv.Stop()
	}
	return errors.Join(serveErr, err)
}

// mergeLinkBytes maps --merge-link-bytes to NodeConfig.MergeLinkBytes, whose 0 is the
// default: the flag's 0 (never link) is negative there.
func mergeLinkBytes(flag int) int64 {
	if flag <= 0 {
		return -1
	}
	return int64(flag)
}
