package coordination

import (
	"context"
	"encoding/json"
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

// ValidNodeName reports whether name may name a node (an agent) in the cluster.
func ValidNodeName(name string) bool { return nodeName.MatchString(name) }

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
	if err := sess.register(ctx); err != nil {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer ccancel()
		_ = sess.Close(cctx)
		return nil, fmt.Errorf("session for %s: register node: %w", node.Node, err)
	}
	sess.log.Info("session started", zap.Int64("ttl_s", secs))
	return sess, nil
}

// createOrGet puts key with the session's lease if it does not exist, and reads it if it
// does (the response's first).
func (s *Session) createOrGet(ctx context.Context, key, val string) (*clientv3.TxnResponse, error) {
	return s.c.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, val, clientv3.WithLease(s.LeaseID()))).
		Else(clientv3.OpGet(key)).
		Commit()
}

// nodeKeyPoll is how often register looks again at a node key another session holds.
const nodeKeyPoll = 250 * time.Millisecond

// register writes the session's node key. The key of an agent that died is still there
// until its session's lease runs out (the session TTL, the time its partitions stay held
// anyway): register waits for that. A key whose lease is renewed while it waits is kept
// alive by another agent running under the same name: it is not touched (its agent would
// vanish from the cluster when this one stopped), and the session fails with
// ErrNodeInUse.
//
// Renewed means its time to live seen to rise twice: once may be etcd alone, which
// gives every lease its whole TTL again when a member becomes leader (an etcd restarted
// with an agent that died). A lease of a TTL too short to be seen rising (etcd reports
// whole seconds) is taken for alive once it has outlived three TTLs and an election.
func (s *Session) register(ctx context.Context) error {
	key := s.c.keys.Node(s.node.Node)
	val := mustJSON(nodeValue{NodeInfo: s.node, StartedAt: s.c.now()})
	var h holderWatch
	for {
		done, err := s.tryRegister(ctx, key, val, &h)
		switch {
		case done:
			return err
		case err != nil && (isPermanent(err) || ctx.Err() != nil):
			return err
		case err != nil:
			// An etcd electing a leader (restarted: the case the wait is for) fails a
			// write the client does not retry: look again.
			s.log.Debug("register node: etcd busy, trying again", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s is still registered by an earlier session: %w", s.node.Node, ctx.Err())
		case <-time.After(nodeKeyPoll):
		}
	}
}

// holderWatch is what register has seen of the lease holding the node key.
type holderWatch struct {
	lease    clientv3.LeaseID
	since    time.Time // when it was first seen
	lastTTL  int64
	lastTerm uint64 // a new leader gives every lease its TTL again, in a new term
	renewals int
}

// tryRegister makes one attempt of register: done with its outcome, or not done (with
// an error worth another attempt, or none when the key's holder may yet expire).
func (s *Session) tryRegister(ctx context.Context, key, val string, h *holderWatch) (bool, error) {
	resp, err := s.createOrGet(ctx, key, val)
	if err != nil {
		return false, err
	}
	kv := firstKV(resp, 0)
	switch {
	case resp.Succeeded:
		return true, nil
	case kv == nil: // deleted between the compare and the read
		return false, nil
	case clientv3.LeaseID(kv.Lease) == s.LeaseID():
		return true, nil // an attempt whose answer was lost
	case kv.Lease == 0: // written by hand: nothing keeps it, take it
		resp, err := s.c.etcd.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpPut(key, val, clientv3.WithLease(s.LeaseID()))).Commit()
		if err != nil {
			return false, err
		}
		return resp.Succeeded, nil
	}
	holder := clientv3.LeaseID(kv.Lease)
	ttl, err := s.c.etcd.TimeToLive(ctx, holder)
	if err != nil {
		return false, err
	}
	if holder != h.lease {
		*h = holderWatch{lease: holder, since: time.Now(), lastTTL: ttl.TTL, lastTerm: ttl.GetRaftTerm()}
		s.log.Info("node key held by an earlier session; waiting for it to expire",
			zap.Int64("holder", int64(holder)), zap.Int64("ttl_s", ttl.TTL))
	}
	if ttl.TTL > h.lastTTL && ttl.GetRaftTerm() == h.lastTerm {
		h.renewals++
	}
	h.lastTTL, h.lastTerm = ttl.TTL, ttl.GetRaftTerm()
	// Expired (-1) or expiring (0 or less until etcd's next sweep): wait for it, unless
	// it has outlived three TTLs and an election still at 0, a TTL too short to see rise.
	outlived := time.Since(h.since) > 3*time.Duration(ttl.GrantedTTL)*time.Second+5*time.Second
	if ttl.TTL > 0 && h.renewals >= 2 || ttl.TTL >= 0 && outlived {
		var v nodeValue
		_ = json.Unmarshal(kv.Value, &v)
		return true, fmt.Errorf("%w: node %s is registered by a live agent (%s, started %s, session %x): give this one another --node, or stop that one",
			ErrNodeInUse, s.node.Node, v.Addr, v.StartedAt.Format(time.RFC3339), int64(holder))
	}
	return false, nil
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
