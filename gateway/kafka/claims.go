package kafka

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
)

const (
	// claimIdle is how long a claim on a group without members here is kept after its
	// last use (a standalone consumer's commits), so that each commit does not claim anew.
	claimIdle = time.Minute
	// claimRetry is how long a claim that could not be taken answers for the group
	// before the next request tries again: the members of a group retry their joins and
	// commits, and one etcd transaction per group per claimRetry is enough.
	claimRetry = 500 * time.Millisecond
	// claimSweep is how often the agent looks in etcd for claims its session holds and
	// it does not know of (a release that failed, a claim written though its answer was
	// lost), and releases them: they would hold their groups until the session ends.
	claimSweep = 5 * time.Second
)

// claim is this agent's claim on coordinating a group (coordination.GroupClaim): the
// group's state here and the offsets committed through it are good only while the claim
// holds, and it is taken before either. Every field is under groups.mu.
type claim struct {
	gc    *coordination.GroupClaim // nil while being taken, or when it could not be
	err   error                    // why it could not be taken
	ready chan struct{}            // closed once taken or failed
	used  time.Time                // when last used, or when it failed
	// The group's offset commits being written, all checked at generation writingGen of
	// the group's state writingGroup (nil and -1: none here; a state made anew counts its
	// generations from 0 again), and a channel closed when the last of them is done
	// (groups.commitChecked).
	writing      int
	writingGroup *group
	writingGen   int32
	written      chan struct{}
}

// session is the agent's current etcd session; nil while it rejoins the cluster.
func (s *Server) session() *coordination.Session {
	if s.node == nil {
		return nil
	}
	return s.node.Session()
}

// claim makes sure this agent holds its claim on the group, taking it if need be (one
// etcd transaction, shared by the requests that come meanwhile), and returns it. The code
// says why not: NOT_COORDINATOR when another agent coordinates it by this agent's view,
// COORDINATOR_LOAD_IN_PROGRESS while the previous coordinator's claim holds (it gives
// it up once it sees it is no longer the coordinator, or with its session),
// COORDINATOR_NOT_AVAILABLE without a session or etcd. Clients retry all three; a name
// no agent takes is INVALID_GROUP_ID.
func (gs *groups) claim(ctx context.Context, name string) (*coordination.GroupClaim, int16) {
	if coordination.ValidateGroupName(name) != nil {
		return nil, kerr.InvalidGroupID.Code // before NOT_COORDINATOR: no agent would take it
	}
	for {
		gs.mu.Lock()
		sess := gs.s.session()
		if sess == nil {
			gs.mu.Unlock()
			return nil, kerr.CoordinatorNotAvailable.Code
		}
		if !gs.s.isCoordinator(name) {
			gs.mu.Unlock()
			return nil, kerr.NotCoordinator.Code
		}
		c := gs.claims[name]
		if c != nil && c.err != nil && time.Since(c.used) >= claimRetry {
			delete(gs.claims, name) // try again
			c = nil
		}
		if c == nil {
			c = &claim{ready: make(chan struct{})}
			gs.claims[name] = c
			gs.mu.Unlock()
			cctx, cancel := context.WithTimeout(ctx, offsetsTimeout)
			gc, err := sess.ClaimGroup(cctx, name)
			cancel()
			gs.mu.Lock()
			c.gc, c.err, c.used = gc, err, time.Now()
			close(c.ready)
			gs.mu.Unlock()
			if err != nil {
				gs.s.log.Info("group not claimed", zap.String("group", name), zap.Error(err))
				return nil, claimCode(err)
			}
			return gc, errNone
		}
		ready := c.ready
		gs.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, kerr.CoordinatorNotAvailable.Code
		}
		gs.mu.Lock()
		sess = gs.s.session()
		switch {
		case c.err != nil:
			gs.mu.Unlock()
			return nil, claimCode(c.err)
		case c.gc.Session() == sess:
			c.used = time.Now()
			gs.mu.Unlock()
			return c.gc, errNone
		}
		// Taken by a session that has ended: the group's state went with it.
		gs.unclaim(name, c)
		gs.mu.Unlock()
	}
}

// claimed says whether the group's claim was taken by the agent's current session.
func (gs *groups) claimed(name string) bool {
	c := gs.claims[name]
	return c != nil && c.gc != nil && c.gc.Session() == gs.s.session()
}

// unclaim forgets the claim c on the group and the group's state, which was good only
// under it; the claim's key is left to its session (gone, or fenced off by the caller).
func (gs *groups) unclaim(name string, c *claim) {
	if gs.claims[name] != c {
		return
	}
	delete(gs.claims, name)
	if g := gs.m[name]; g != nil {
		gs.drop(g)
	}
}

// fenced is told that a commit through gc was refused by its fence: another agent
// claimed the group since (this one's session ended, or it was told to let go).
func (gs *groups) fenced(gc *coordination.GroupClaim) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if c := gs.claims[gc.Group()]; c != nil && c.gc == gc {
		gs.s.log.Warn("group claim lost: another agent coordinates the group", zap.String("group", gc.Group()),
			zap.Int64("epoch", gc.Epoch()))
		gs.unclaim(gc.Group(), c)
	}
}

// release gives up the claims of groups this agent no longer coordinates, and of groups
// without members here left unused for claimIdle: the next coordinator may claim them at
// once. Every claimSweep it also releases what its session holds in etcd unknown to it
// (sweep). Called under gs.mu; the etcd writes run after.
func (gs *groups) release(now time.Time) {
	sess := gs.s.session()
	for name, c := range gs.claims {
		if c.gc == nil {
			if c.err != nil && now.Sub(c.used) >= claimRetry {
				delete(gs.claims, name)
			}
			continue // being taken, or failed
		}
		_, busy := gs.m[name]
		switch {
		case c.gc.Session() != sess:
			gs.unclaim(name, c)
		case !gs.s.isCoordinator(name), !busy && now.Sub(c.used) > claimIdle:
			gs.unclaim(name, c)
			gc := c.gc
			gs.background(func(ctx context.Context) {
				if err := gc.Release(ctx); err != nil {
					gs.s.log.Warn("group claim not released; the next sweep tries again",
						zap.String("group", gc.Group()), zap.Error(err))
				}
			})
		}
	}
	if sess != nil && now.Sub(gs.swept) >= claimSweep && !gs.sweeping {
		gs.swept, gs.sweeping = now, true
		gs.background(func(ctx context.Context) { gs.sweep(ctx, sess) })
	}
}

// background runs fn with an etcd bound, waited for by shutdown.
func (gs *groups) background(fn func(ctx context.Context)) {
	gs.releasing.Add(1)
	go func() {
		defer gs.releasing.Done()
		ctx, cancel := context.WithTimeout(context.Background(), offsetsTimeout)
		defer cancel()
		fn(ctx)
	}()
}

// sweep releases the claims sess holds in etcd that this agent does not use: each would
// keep its group's next coordinator answering COORDINATOR_LOAD_IN_PROGRESS until sess
// ends, which for a live agent is never.
func (gs *groups) sweep(ctx context.Context, sess *coordination.Session) {
	defer func() {
		gs.mu.Lock()
		gs.sweeping = false
		gs.mu.Unlock()
	}()
	held, err := sess.HeldGroupClaims(ctx)
	if err != nil {
		gs.s.log.Debug("group claims not swept", zap.Error(err))
		return
	}
	for _, gc := range held {
		gs.mu.Lock()
		c := gs.claims[gc.Group()]
		inUse := c != nil && (c.gc == nil && c.err == nil || c.gc != nil && c.gc.Epoch() == gc.Epoch())
		gs.mu.Unlock()
		if inUse {
			continue
		}
		if err := gc.Release(ctx); err != nil {
			gs.s.log.Warn("stray group claim not released", zap.String("group", gc.Group()), zap.Error(err))
		}
	}
}

// claimCode is the Kafka code of a claim not taken.
func claimCode(err error) int16 {
	if errors.Is(err, coordination.ErrGroupClaimed) {
		return kerr.CoordinatorLoadInProgress.Code
	}
	return kerr.CoordinatorNotAvailable.Code
}
