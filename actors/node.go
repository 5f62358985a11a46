package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway/membudget"
	"github.com/streamhouse/streamhouse/segmentstore"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

// ClusterName names the protoactor-go cluster of a StreamHouse deployment.
const ClusterName = "streamhouse"

// NodeConfig configures an agent's place in the cluster. Zero fields take the documented
// defaults.
type NodeConfig struct {
	// Info names the agent (required), its zone, and the address clients reach its gateway
	// at (informational here).
	Info coordination.NodeInfo
	// ListenHost and ListenPort are where the actor-to-actor gRPC remote listens.
	// Default 127.0.0.1 and a free port.
	ListenHost string
	ListenPort int
	// AdvertisedHost is the host:port other agents dial for the remote. Default: the listen
	// address.
	AdvertisedHost string
	// SessionTTL is the etcd session TTL: how long a silent agent keeps its partitions.
	// Default coordination.DefaultSessionTTL (5s).
	SessionTTL time.Duration
	// The agent's memory is bounded by three budgets shared by all its partitions, whatever
	// their number: CacheBytes for segment blocks read from the store (default
	// DefaultCacheBytes), MaxPendingBytes for records accepted and not yet acked and their
	// segments until written (beyond it produce answers ResourceExhausted; default
	// DefaultMaxPendingBytes), RecentBytes for
	// committed records kept for tail reads (default DefaultRecentBytes).
	CacheBytes      int64
	MaxPendingBytes int64
	RecentBytes     int64
	// HistoryReadBytes is a budget for what the fetches this agent's partitions serve
	// from the store read from it (each piece the block cache does not hold, and the
	// neighbours read with it), from a read's first such piece until its answer is handed
	// on: a read runs on once the fetch that asked for it was given up (a client's
	// deadline, an attempt sent again), so the budgets of the fetches' callers alone do
	// not bound it. A read starts while the budget is under it, waiting up to
	// historyReadWait (then the fetch answers RESOURCE_EXHAUSTED), and may take it past
	// as it goes on. Default DefaultHistoryReadBytes; streamhouse sets it to
	// --max-read-bytes.
	HistoryReadBytes int64
	// MaxUploads bounds the agent's concurrent object PUTs; segments of all partitions
	// that wait for a slot share the next object, and a PUT beyond the first starts only
	// once the last one started has run overlapAfter (50 ms) or the segments waiting
	// weigh overlapBytes (2 MiB). Default DefaultMaxUploads.
	MaxUploads int
	// MaxInFlight bounds the segments of one partition on their way to the store; a
	// batch whose linger passed while they are all in flight keeps growing. Default
	// DefaultMaxUploads.
	MaxInFlight int
	// CompactInterval is how often the agent applies retention to the partitions it owns
	// and merges their small segments; negative disables both (a benchmark's A/B). Default
	// DefaultCompactInterval.
	CompactInterval time.Duration
	// MergeLinkBytes is the smallest stored segment a merge links where it is rather
	// than copying it (a merge of only such segments writes no object); negative: merges
	// always copy. Default DefaultMergeLinkBytes.
	MergeLinkBytes int64
	// Client tunes request routing.
	Client ClientOptions
	// ClientOnly joins the cluster without hosting partitions: a process that only routes
	// requests (a test driver, later a gateway-only process). Default false.
	ClientOnly bool
	Log        *zap.Logger
}

// Node is one agent's membership in the cluster: a session, a protoactor-go actor system
// and cluster member hosting partition actors, and the rebalancer that activates the
// partitions it owns. When its session is lost (a pause longer than the TTL, a partition
// from etcd) every local partition is already fenced; the node tears the member down and
// joins again with a new session and a new member id, since protoactor-go never lets an
// evicted member id back in.
type Node struct {
	cfg    NodeConfig
	client *coordination.Client
	store  objstore.Store
	mirror *coordination.Mirror
	place  *Placement
	hist   *history
	log    *zap.Logger
	// pending and recent are the memory budgets of every partition this node hosts,
	// across rejoins.
	pending *budget
	recent  *recentCache
	flusher *flusher
	// compactor applies retention and merges to the partitions of every incarnation.
	compactor *compactor

	mu  sync.Mutex
	cur *member // nil while rejoining

	// observers are told when the node leaves and joins (ObserveMembership); obsMu
	// keeps their calls in the order of the changes.
	obsMu     sync.Mutex
	observers []func(joined bool)

	// leaveOnce starts the graceful leave of Stop once; left is closed when it is done,
	// so that Stop can be called again (to wait longer, or by a deferred cleanup).
	leaveOnce sync.Once
	left      chan struct{}

	cancel context.CancelFunc
	done   chan struct{}
}

// member is one incarnation of the node in the cluster.
type member struct {
	session  *coordination.Session
	system   *actor.ActorSystem
	cluster  *cluster.Cluster
	provider *sessionProvider
	local    *localActivations
	deps     *partitionDeps
	reb      *rebalancer
	client   *Client
	cancel   context.CancelFunc
	done     chan struct{}
}

// Memory budget defaults of an agent (NodeConfig).
const (
	// DefaultCacheBytes is 96 MiB rather than 128 so that the default soft memory limit
	// (the four budgets + 128 MiB of headroom for what they do not count: 416 MiB) keeps
	// the agent's peak RSS under 512 MiB with 100 partitions at full load over Kafka,
	// whose heap bursts passed it at 128 in 2 of 21 runs; measured with no slower
	// produce or catch-up read (docs/BENCHMARKS.md, profiling item 42).
	DefaultCacheBytes      = 96 << 20
	DefaultMaxPendingBytes = 64 << 20
	DefaultRecentBytes     = 64 << 20
	// DefaultHistoryReadBytes is the default read budget of a gateway
	// (gateway.DefaultMaxReadBytes): the reads a partition serves are the answers its
	// callers reserved for, while they wait for them.
	DefaultHistoryReadBytes = 64 << 20
	// DefaultMaxUploads: up to two object PUTs at a time per agent (and two segments per
	// partition in flight): the second starts only once the first has run overlapAfter,
	// so that a slow PUT does not hold the next object back while quick ones leave
	// segments to gather into larger objects; more slots make smaller objects, hence more
	// PUTs for the same records.
	DefaultMaxUploads = 2
)

// StartNode joins the cluster. mirror must be loaded and watched by the caller.
func StartNode(ctx context.Context, c *coordination.Client, store objstore.Store, mirror *coordination.Mirror, cfg NodeConfig) (*Node, error) {
	if cfg.ListenHost == "" {
		cfg.ListenHost = "127.0.0.1"
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.MaxPendingBytes <= 0 {
		cfg.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if cfg.RecentBytes <= 0 {
		cfg.RecentBytes = DefaultRecentBytes
	}
	if cfg.HistoryReadBytes <= 0 {
		cfg.HistoryReadBytes = DefaultHistoryReadBytes
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	n := &Node{cfg: cfg, client: c, store: store, mirror: mirror, place: newPlacement(mirror),
		pending: newBudget(cfg.MaxPendingBytes), recent: newRecentCache(cfg.RecentBytes),
		flusher: newFlusher(store, cfg.Info.Node, cfg.MaxUploads, 0),
		hist: &history{c: c, store: store, cache: segmentstore.NewCache(cfg.CacheBytes), near: newNeighbours(),
			reads: membudget.New(cfg.HistoryReadBytes, membudget.Metrics{Held: metricHistoryReadBytes, Waits: metricHistoryReadWaits})},
		log: cfg.Log.With(zap.String("node", cfg.Info.Node), zap.String("zone", cfg.Info.Zone))}
	if cfg.CompactInterval == 0 {
		cfg.CompactInterval = DefaultCompactInterval
	}
	if cfg.MergeLinkBytes == 0 {
		cfg.MergeLinkBytes = DefaultMergeLinkBytes
	}
	n.compactor = &compactor{client: c, store: store, mirror: mirror, names: n.flusher, interval: cfg.CompactInterval,
		upload: DefaultUploadTimeout, commit: DefaultCommitTimeout, linkBytes: cfg.MergeLinkBytes, log: n.log}
	m, err := n.join(ctx)
	if err != nil {
		return nil, err
	}
	n.cur = m
	// Not on every change: the high-water marks change with every commit of the
	// cluster, and a rebalance pass looks at every partition of every topic.
	mirror.ObservePlacement(func() {
		if m := n.current(); m != nil {
			m.reb.poke()
		}
	})
	rctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan struct{})
	if !cfg.ClientOnly { // with compaction off, it still passes topic settings on
		go n.compactor.run(rctx)
	}
	go n.supervise(rctx)
	return n, nil
}

func (n *Node) current() *member {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cur
}

// Session is the current member's etcd session; nil while the node rejoins.
func (n *Node) Session() *coordination.Session {
	if m := n.current(); m != nil {
		return m.session
	}
	return nil
}

// Client routes requests through the current member; it is nil while the node rejoins.
func (n *Node) Client() *Client {
	if m := n.current(); m != nil {
		return m.client
	}
	return nil
}

// Address is the current member's remote address.
func (n *Node) Address() string {
	if m := n.current(); m != nil {
		return m.system.Address()
	}
	return ""
}

// Members returns the cluster members as this node sees them.
func (n *Node) Members() []Member {
	if m := n.current(); m != nil {
		return m.provider.Members()
	}
	return nil
}

// Owner returns the address of the member that Placement assigns p to.
func (n *Node) Owner(p coordination.Partition) string {
	m := n.current()
	if m == nil {
		return ""
	}
	return n.place.Owner(m.cluster.MemberList.Members().Members(), p)
}

// maxRemoteMessage bounds a message between agents' remotes, a batch of the envelopes
// one agent has for another. gRPC's default, 4 MiB, is below a single produce request or
// fetch answer (up to --max-batch-bytes, --max-fetch-bytes, 16 MiB each): past it the
// receiving remote refused the batch and closed the stream, and every request between the
// two agents went unanswered until it was dialled again. What agents hold in memory is
// bounded by their budgets, not by this.
const maxRemoteMessage = 1 << 30

// remoteMessageSize is the remote's options for maxRemoteMessage, both ways.
func remoteMessageSize() []remote.ConfigOption {
	return []remote.ConfigOption{
		remote.WithServerOptions(grpc.MaxRecvMsgSize(maxRemoteMessage), grpc.MaxSendMsgSize(maxRemoteMessage)),
		remote.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRemoteMessage), grpc.MaxCallSendMsgSize(maxRemoteMessage))),
	}
}

func (n *Node) join(ctx context.Context) (*member, error) {
	s, err := n.client.NewSession(ctx, n.cfg.Info, n.cfg.SessionTTL)
	if err != nil {
		return nil, err
	}
	system := actor.NewActorSystem(actor.WithLoggerFactory(protoactorLogger))
	port := n.cfg.ListenPort
	ropts := remoteMessageSize()
	if n.cfg.AdvertisedHost != "" {
		ropts = append(ropts, remote.WithAdvertisedHost(n.cfg.AdvertisedHost))
	}
	rcfg := remote.Configure(n.cfg.ListenHost, port, ropts...)
	local := newLocalActivations()
	deps := &partitionDeps{
		client: n.client, session: s, mirror: n.mirror, history: n.hist, system: system, local: local, log: n.log, compactor: n.compactor,
		writer: writerConfig{Store: n.store, Flusher: n.flusher, MaxInFlight: n.cfg.MaxInFlight, Pending: n.pending, Recent: n.recent},
	}
	kind := cluster.NewKind(PartitionKind, actor.PropsFromProducer(func() actor.Actor { return newPartitionActor(deps) },
		actor.WithDispatcher(mailboxDispatcher{})))
	provider := newSessionProvider(n.client, s)
	// Membership is the agents' etcd sessions alone (sessionProvider). The library's
	// gossip would also block, for as long as the process lives, a member whose
	// heartbeats it has not heard for 20 s, and leave it out of every topology after:
	// agents cut from each other that long, each keeping its session, then placed the
	// partitions over different members at the next change of membership, and some
	// partitions went unowned for good.
	opts := []cluster.ConfigOption{cluster.WithHeartbeatExpiration(math.MaxInt64)}
	if !n.cfg.ClientOnly {
		opts = append(opts, cluster.WithKinds(kind))
	}
	lookup := &placementLookup{placement: n.place, timeout: 5 * time.Second, leaving: &deps.leaving}
	ccfg := cluster.Configure(ClusterName, provider, lookup, rcfg, opts...)
	cl := cluster.New(system, ccfg)
	if err := startMember(cl); err != nil {
		_ = s.Close(context.Background())
		return nil, err
	}
	m := &member{session: s, system: system, cluster: cl, provider: provider, local: local, deps: deps,
		reb: newRebalancer(cl, local, n.mirror, n.place, s, n.log), client: NewClient(cl, n.place, n.cfg.Client), done: make(chan struct{})}
	rctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		if !n.cfg.ClientOnly {
			m.reb.run(rctx)
		}
	}()
	n.log.Info("joined the cluster", zap.String("member", system.ID), zap.String("address", system.Address()), zap.Int64("session", int64(s.LeaseID())))
	return m, nil
}

// ObserveMembership calls fn at once with whether the node is a member of the cluster,
// then each time that changes: false when its session is lost (it serves nothing until
// it has rejoined), true when it has rejoined. Calls come one at a time, in order; fn
// must not block.
func (n *Node) ObserveMembership(fn func(joined bool)) {
	n.obsMu.Lock()
	defer n.obsMu.Unlock()
	n.observers = append(n.observers, fn)
	fn(n.current() != nil)
}

// setCurrent makes m (nil: none, while rejoining) the node's member and tells the
// observers.
func (n *Node) setCurrent(m *member) {
	n.obsMu.Lock()
	defer n.obsMu.Unlock()
	n.mu.Lock()
	n.cur = m
	n.mu.Unlock()
	for _, fn := range n.observers {
		fn(m != nil)
	}
}

// supervise rejoins whenever the session ends, until the node stops.
func (n *Node) supervise(ctx context.Context) {
	defer close(n.done)
	for {
		m := n.current()
		select {
		case <-ctx.Done():
			return
		case <-m.session.Done():
		}
		n.log.Warn("session lost: every local partition is fenced; leaving and rejoining the cluster", zap.String("member", m.system.ID))
		n.setCurrent(nil)
		n.leave(m, false)
		for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
			if ctx.Err() != nil {
				return
			}
			// Plus the TTL: the new session may wait for the old one's node key to expire.
			jctx, cancel := context.WithTimeout(ctx, 10*time.Second+n.cfg.SessionTTL)
			next, err := n.join(jctx)
			cancel()
			if err == nil {
				n.setCurrent(next)
				break
			}
			n.log.Warn("rejoin failed", zap.Error(err), zap.Duration("backoff", backoff))
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
	}
}

// leave takes a member out of the cluster. Gracefully, it first withdraws its member
// record, so that the new owners start acquiring at once, then stops every local
// partition (each commits what it accepted and releases its lease, which is what the new
// owners wait for), then shuts the member down and closes the session. After the
// session is lost it stops the local partitions and shuts the member down. The epoch fence is
// what makes announcing the departure before the last commits safe: a new owner cannot
// write until the lease is released.
func (n *Node) leave(m *member, graceful bool) {
	m.cancel()
	<-m.done
	if graceful {
		n.drainLocalPartitions(m)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.provider.deregister(ctx); err != nil {
			n.log.Warn("member record not withdrawn", zap.Error(err))
		}
		cancel()
		n.stopLocalPartitions(m)
	} else {
		// The session is gone, and with it every local lease: the partitions' actors
		// would never commit again, but stopped by nothing (the cluster's shutdown stops
		// no actor) they would stay in the compactor, the recent buffer and the owned
		// count beside the next session's. Their stop is fenced (or, with etcd out of
		// reach, times out: a few seconds before a rejoin that could not happen sooner).
		n.stopLocalPartitions(m)
		m.provider.stopWatching()
	}
	m.cluster.Shutdown(graceful)
	if graceful {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.session.Close(ctx); err != nil {
			n.log.Warn("session not closed", zap.Error(err))
		}
		cancel()
	}
}

// drainLocalPartitions has every local partition refuse new produce requests and answer
// those it holds, so that no request is in flight on this agent when it leaves (a request
// re-sent elsewhere while this agent still commits it would be written twice).
func (n *Node) drainLocalPartitions(m *member) {
	m.deps.leaving.Store(true)
	var wg sync.WaitGroup
	for p, pid := range m.local.snapshot() {
		wg.Go(func() {
			// A drain that runs out of time still waits for a commit under way (writer.Flush).
			if _, err := m.system.Root.RequestFuture(pid, &drain{}, stopFlushTimeout+DefaultCommitTimeout+5*time.Second).Result(); err != nil {
				n.log.Warn("partition not drained", zap.String("partition", p.String()), zap.Error(err))
			}
		})
	}
	wg.Wait()
}

func (n *Node) stopLocalPartitions(m *member) {
	var wg sync.WaitGroup
	for p, pid := range m.local.snapshot() {
		wg.Go(func() {
			if err := m.system.Root.PoisonFuture(pid).Wait(); err != nil {
				n.log.Warn("partition did not stop in time", zap.String("partition", p.String()), zap.Error(err))
			}
		})
	}
	wg.Wait()
}

// Stop leaves the cluster gracefully: local partitions answer what they accepted, then
// the member record goes, then the partitions release their leases. Calling it again
// waits for the same leave.
func (n *Node) Stop(ctx context.Context) error {
	n.cancel()
	select {
	case <-n.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	m := n.current()
	if m == nil {
		return errors.New("actors: node stopped while rejoining")
	}
	n.leaveOnce.Do(func() {
		n.left = make(chan struct{})
		go func() { n.leave(m, true); close(n.left) }()
	})
	select {
	case <-n.left:
		n.log.Info("left the cluster")
		return nil
	case <-ctx.Done():
		return fmt.Errorf("leave the cluster: %w", ctx.Err())
	}
}

// SplitHostPort parses a listen address into host and port, for flags.
func SplitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q", p)
	}
	return host, port, nil
}

// startMember starts the cluster member, turning protoactor-go's panic on a listen
// failure (a port still held by the previous member) into an error the caller retries.
func startMember(cl *cluster.Cluster) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("start cluster member: %v", r)
		}
	}()
	cl.StartMember()
	return nil
}

// ProtoactorLogEnv names the variable that turns on protoactor-go's own logs (debug, info,
// warn or error) on stderr, for debugging the cluster layer. They are off by default:
// they are noisy, and what matters is in the agent's own logs.
const ProtoactorLogEnv = "STREAMHOUSE_PROTOACTOR_LOG"

func protoactorLogger(*actor.ActorSystem) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv(ProtoactorLogEnv))); err != nil || os.Getenv(ProtoactorLogEnv) == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
