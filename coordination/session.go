package coordination

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// DefaultSessionTTL is the default TTL of an agent's etcd session: how long a node that
// stopped answering keeps its partitions before others may take them.
const DefaultSessionTTL = 5 * time.Second

var nodeName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,128}$`)

// Session is one agent's etcd session: a lease kept alive in the background, to which the
// agent's node key and every partition lease it holds are attached. When the session ends
// (Close, or the lease expiring because the agent paused or lost etcd) all of them vanish
// at once, and Done is closed.
type Session struct {
	c      *Client
	s      *concurrency.Session
	node   NodeInfo
	cancel context.CancelFunc
	log    *zap.Logger
}

// NewSession grants a lease with ttl (rounded up to whole seconds, at least 1s; zero means
// DefaultSessionTTL), keeps it alive, and registers node under /nodes/<node>.
func (c *Client) NewSession(ctx context.Context, node NodeInfo, ttl time.Duration) (*Session, error) {
	if !nodeName.MatchString(node.Node) {
		return nil, invalidf("node name %q: want 1-128 characters of a-z A-Z 0-9 . _ -", node.Node)
	}
	if ttl == 0 {
		ttl = DefaultSessionTTL
	}
	if ttl < 0 {
		return nil, invalidf("session TTL %s is negative", ttl)
	}
	secs := int64(math.Ceil(ttl.Seconds()))
	grant, err := c.etcd.Grant(ctx, secs)
	if err != nil {
		return nil, fmt.Errorf("session for %s: grant lease: %w", node.Node, err)
	}
	// The keep-alive must outlive ctx, which only bounds the setup.
	sctx, cancel := context.WithCancel(context.Background())
	s, err := concurrency.NewSession(c.etcd, concurrency.WithLease(grant.ID), concurrency.WithContext(sctx))
	if err != nil {
		cancel()
		_, _ = c.etcd.Revoke(ctx, grant.ID)
		return nil, fmt.Errorf("session for %s: %w", node.Node, err)
	}
	sess := &Session{c: c, s: s, node: node, cancel: cancel,
		log: c.log.With(zap.String("node", node.Node), zap.String("zone", node.Zone), zap.Int64("session", int64(grant.ID)))}
	// A restarted agent may find its previous key still there until the old lease
	// expires; the node key is informational, so the new session simply takes it over.
	val := mustJSON(nodeValue{NodeInfo: node, StartedAt: c.now()})
	if _, err := c.etcd.Put(ctx, c.keys.Node(node.Node), val, clientv3.WithLease(grant.ID)); err != nil {
		_ = sess.Close(ctx)
		return nil, fmt.Errorf("session for %s: register node: %w", node.Node, err)
	}
	sess.log.Info("session started", zap.Int64("ttl_s", secs))
	return sess, nil
}

// Node is the agent this session belongs to.
func (s *Session) Node() NodeInfo { return s.node }

// LeaseID is the etcd lease of the session.
func (s *Session) LeaseID() clientv3.LeaseID { return s.s.Lease() }

// Done is closed when the session has ended: its lease expired or was revoked, or Close
// was called. Every partition lease of the session is gone by then.
func (s *Session) Done() <-chan struct{} { return s.s.Done() }

// Close revokes the session lease, which deletes the node key and releases every
// partition lease the session holds in one step.
func (s *Session) Close(ctx context.Context) error {
	defer s.cancel()
	if _, err := s.c.etcd.Revoke(ctx, s.s.Lease()); err != nil {
		return fmt.Errorf("close session of %s: %w", s.node.Node, err)
	}
	return nil
}

func (s *Session) done() bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

// ErrLocked: another session holds the lock (TryLock).
var ErrLocked = errors.New("coordination: locked by another session")

// TryLock takes the cluster-wide lock name (Keys.Lock) for this session without waiting:
// ErrLocked if another session holds it. The lock ends with unlock or with the session,
// so a chore of a dead agent is free for another at once after its TTL.
func (s *Session) TryLock(ctx context.Context, name string) (unlock func(context.Context) error, err error) {
	m := concurrency.NewMutex(s.s, s.c.keys.Lock(name))
	if err := m.TryLock(ctx); err != nil {
		if errors.Is(err, concurrency.ErrLocked) {
			return nil, fmt.Errorf("lock %s: %w", name, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return m.Unlock, nil
}
