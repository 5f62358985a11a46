package actors

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
)

// rebalanceInterval is how often the rebalancer checks even without a trigger, to revive
// partitions whose actor stopped (a failed upload, a lost race for the lease).
const rebalanceInterval = 2 * time.Second

// rebalancer keeps every partition of every topic activated on its rendezvous owner.
// protoactor-go's disthash places identities by rendezvous hashing but activates them only
// on the first request and never re-activates anything (DESIGN.md §7); so each agent
// computes, over the current members, which partitions it owns and activates those it does
// not hold the lease of yet. Moving partitions away is disthash's part: on a topology change
// it stops local activations it no longer owns, and their Stopping releases the lease.
type rebalancer struct {
	cluster *cluster.Cluster
	local   *localActivations
	mirror  *coordination.Mirror
	place   *Placement
	session *coordination.Session
	log     *zap.Logger
	trigger chan struct{}
	// episode is when the current rebalance episode began: the first pass that found a
	// partition to take or give up. Zero when this member serves exactly its share.
	episode time.Time
	// strays are the leases this member's session held, without a local activation, for
	// partitions it does not own, at the last pass (by epoch): released at the next pass
	// that still finds them so, two passes apart so as not to race an activation.
	strays map[coordination.Partition]int64
}

func newRebalancer(c *cluster.Cluster, local *localActivations, m *coordination.Mirror, place *Placement, s *coordination.Session, log *zap.Logger) *rebalancer {
	return &rebalancer{cluster: c, local: local, mirror: m, place: place, session: s, log: log, trigger: make(chan struct{}, 1)}
}

func (r *rebalancer) poke() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// run rebalances on every topology change, every change of the topics, leases and nodes
// (poke), and every rebalanceInterval, until ctx ends.
func (r *rebalancer) run(ctx context.Context) {
	sub := r.cluster.ActorSystem.EventStream.Subscribe(func(evt any) {
		if _, ok := evt.(*cluster.ClusterTopology); ok {
			r.poke()
		}
	})
	defer r.cluster.ActorSystem.EventStream.Unsubscribe(sub)
	// The mirror's changes poke it through the node (Node's ObservePlacement), which
	// pokes the rebalancer of its current membership: one registered here would outlive
	// the membership, and be poked on every change for as long as the agent runs.
	tick := time.NewTicker(rebalanceInterval)
	defer tick.Stop()
	r.poke()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.trigger:
		}
		r.rebalance(ctx)
	}
}

// owned returns the partitions that Placement over the current members assigns to this
// member.
func (r *rebalancer) owned() map[coordination.Partition]bool {
	members := r.cluster.MemberList.Members().Members()
	self := r.cluster.ActorSystem.Address()
	out := map[coordination.Partition]bool{}
	for _, t := range r.mirror.Topics() {
		for i := range t.Partitions {
			p := coordination.Partition{Topic: t.Name, Partition: i}
			if r.place.Owner(members, p) == self {
				out[p] = true
			}
		}
	}
	return out
}

func (r *rebalancer) rebalance(ctx context.Context) {
	owned := r.owned()
	node := r.session.Node().Node
	metricMembers.WithLabelValues(node).Set(float64(r.cluster.MemberList.Length()))
	work := 0
	local := r.local.snapshot()
	// Stop local activations this member does not own (strays of a topology change, or
	// partitions of a deleted topic); stopping commits what they accepted and releases
	// the lease for the owner.
	for p, pid := range local {
		if !owned[p] {
			r.log.Info("stopping a partition this member does not own", zap.String("partition", p.String()),
				zap.Int("members", r.cluster.MemberList.Length()))
			r.cluster.ActorSystem.Root.Poison(pid)
			work++
		}
	}
	mine := int64(r.session.LeaseID())
	work += r.releaseStrays(ctx, owned, local, mine)
	for p := range owned {
		if ctx.Err() != nil {
			return
		}
		if o, ok := r.mirror.Owner(p); ok && o.Lease == mine && local[p] != nil {
			continue // active here
		}
		// Held by this session with no activation (an Acquire applied whose answer was
		// lost, a Release that failed): an activation replaces the lease with its own.
		work++
		// Get activates the identity on its owner, here, and returns once it is spawned;
		// the actor acquires the lease on its own.
		if pid := r.cluster.Get(Identity(p), PartitionKind); pid == nil {
			r.log.Debug("partition activation not placed yet", zap.String("partition", p.String()))
		}
	}
	r.account(node, work, len(owned))
}

// releaseStrays releases the leases this session holds with no local activation for
// partitions it does not own, once two passes have found them so (with the same epoch),
// and returns how many it found.
func (r *rebalancer) releaseStrays(ctx context.Context, owned map[coordination.Partition]bool,
	local map[coordination.Partition]*actor.PID, mine int64) int {
	seen := map[coordination.Partition]int64{}
	for _, o := range r.mirror.Owners() {
		if o.Lease != mine || owned[o.Partition] || local[o.Partition] != nil {
			continue
		}
		seen[o.Partition] = o.Epoch
		if r.strays[o.Partition] != o.Epoch {
			continue // first seen: an activation may be about to show up
		}
		r.log.Warn("releasing a stray lease: no activation here holds it", zap.String("partition", o.Partition.String()),
			zap.Int64("epoch", o.Epoch))
		if err := r.session.ReleaseStray(ctx, o.Partition, o.Epoch); err != nil {
			r.log.Warn("stray lease not released; next pass retries", zap.Error(err))
		}
	}
	r.strays = seen
	return len(seen)
}

// account opens a rebalance episode when a pass finds work and closes it, observing its
// duration, at the first pass that finds none.
func (r *rebalancer) account(node string, work, owned int) {
	switch {
	case work > 0 && r.episode.IsZero():
		r.episode = time.Now()
		metricRebalances.WithLabelValues(node).Inc()
		r.log.Info("rebalancing", zap.Int("partitions_to_move", work), zap.Int("owned", owned),
			zap.Int("members", r.cluster.MemberList.Length()))
	case work == 0 && !r.episode.IsZero():
		d := time.Since(r.episode)
		r.episode = time.Time{}
		metricRebalanceDuration.WithLabelValues(node).Observe(d.Seconds())
		metricRebalanceLast.WithLabelValues(node).Set(d.Seconds())
		r.log.Info("rebalanced: serving every owned partition", zap.Int("owned", owned), zap.Duration("took", d))
	}
}
