package kafka

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/actors"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway"
	"github.com/streamhouse/streamhouse/gateway/membudget"
)

// DefaultAddr is where an agent's Kafka listener listens unless told otherwise.
const DefaultAddr = ":9092"

// DefaultMaxFrameBytes is Kafka's socket.request.max.bytes: clients size their requests
// by it (franz-go's default largest write is 100 MiB), so a smaller limit would close
// connections that a Kafka broker serves.
const DefaultMaxFrameBytes = 100 << 20

// DefaultMaxInFlightRequests and DefaultMaxInFlightBytes bound the produce requests one
// connection serves at once (Options).
const (
	DefaultMaxInFlightRequests = 5
	DefaultMaxInFlightBytes    = 32 << 20
)

// Options configure a Server. Zero fields take the documented defaults.
type Options struct {
	// Self is this agent; its Kafka field is the address Metadata advertises for it.
	Self coordination.NodeInfo
	// Limits bound records and requests as on the gRPC API (gateway.Limits defaults).
	Limits gateway.Limits
	// MaxFrameBytes bounds one request frame, and (twice over, decodedPerFrame) what the
	// records of one produce request hold once decoded; a larger frame closes its
	// connection. Default DefaultMaxFrameBytes.
	MaxFrameBytes int
	// FrameTimeout bounds how long a frame takes to arrive once its size is read: past
	// it the connection closes, and the queued bytes the frame holds go back, so that a
	// client that stalls mid-frame cannot hold every other connection's next frame back.
	// Default DefaultFrameTimeout.
	FrameTimeout time.Duration
	// IdleTimeout closes a connection that sends no request for this long, as Kafka's
	// connections.max.idle.ms: what a client abandoned without closing (each connection
	// holds a read buffer and goroutines) goes away by itself. Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxInFlightRequests bounds the produce requests of an idempotent producer that one
	// connection serves at once (pipeline.go). Default 5, Kafka's limit for such a
	// producer; 1 serves each request once those before it are answered.
	MaxInFlightRequests int
	// MaxInFlightBytes bounds their frames together; a larger request waits for those
	// before it. Default 32 MiB.
	MaxInFlightBytes int
	// MaxQueuedBytes bounds the request frames read and not yet answered over all
	// connections (Kafka's queued.max.request.bytes, queued.go): once they reach it, a
	// connection's next frame waits to be read. Default DefaultMaxQueuedBytes.
	MaxQueuedBytes int
	// Reads is the agent's read budget, shared with its gRPC API (gateway.NewReadBudget):
	// a fetch's answer counts in it from before its reads until it is written to the
	// client. Default: a budget of its own of gateway.DefaultMaxReadBytes.
	Reads *membudget.Budget
	// GroupRebalanceTimeout bounds how long a group waits for its members to rejoin
	// when a client asks for no timeout of its own. Default 60s.
	GroupRebalanceTimeout time.Duration
	// MaxGroupMembers bounds the members of a group: a join past it is refused
	// GROUP_MAX_SIZE_REACHED. Default DefaultMaxGroupMembers.
	MaxGroupMembers int
	// Log receives the listener's logs. Default: none.
	Log *zap.Logger
}

// Server is one agent's Kafka listener.
type Server struct {
	coord  *coordination.Client
	mirror *coordination.Mirror
	node   *actors.Node
	opts   Options
	limits gateway.Limits
	log    *zap.Logger
	groups *groups
	queued *membudget.Budget // the request frames of every connection
	// testHookDecoded, when set (by tests), runs after a produce's partition is decoded
	// (or refused) and before what it decoded to is taken from queued.
	testHookDecoded func()
	ctx             context.Context // canceled by Close: every request's context derives from it
	cancel          context.CancelFunc

	mu    sync.Mutex
	lis   []net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewServer serves Kafka clients through node, reading metadata from mirror.
func NewServer(coord *coordination.Client, mirror *coordination.Mirror, node *actors.Node, opts Options) *Server {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	opts.Limits = opts.Limits.WithDefaults()
	if opts.MaxFrameBytes <= 0 {
		opts.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if opts.MaxInFlightRequests <= 0 {
		opts.MaxInFlightRequests = DefaultMaxInFlightRequests
	}
	if opts.MaxInFlightBytes <= 0 {
		opts.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if opts.FrameTimeout <= 0 {
		opts.FrameTimeout = DefaultFrameTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxQueuedBytes <= 0 {
		opts.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if opts.Reads == nil {
		opts.Reads = gateway.NewReadBudget(0)
	}
	if opts.GroupRebalanceTimeout <= 0 {
		opts.GroupRebalanceTimeout = time.Minute
	}
	if opts.MaxGroupMembers <= 0 {
		opts.MaxGroupMembers = DefaultMaxGroupMembers
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{coord: coord, mirror: mirror, node: node, opts: opts, limits: opts.Limits,
		log: opts.Log.With(zap.String("listener", "kafka")), ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{},
		queued: newQueuedBytes(int64(opts.MaxQueuedBytes))}
	s.groups = newGroups(s)
	return s
}

// Serve accepts connections on lis until Close; it returns nil after Close.
func (s *Server) Serve(lis net.Listener) error {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return lis.Close()
	}
	s.lis = append(s.lis, lis)
	s.mu.Unlock()
	for {
		c, err := lis.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			_ = c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		metricConnections.Inc()
		go func() {
			defer s.wg.Done()
			defer metricConnections.Dec()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting, closes every connection (requests in flight are canceled) and
// waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.cancel()
	for _, l := range s.lis {
		_ = l.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.groups.shutdown()
	return nil
}

func (s *Server) client() (*actors.Client, bool) {
	c := s.node.Client()
	return c, c != nil
}
