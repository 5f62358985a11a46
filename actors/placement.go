package actors

import (
	"hash/fnv"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"

	"github.com/streamhouse/streamhouse/coordination"
)

// Placement decides which member hosts each partition: rendezvous hashing with bounded
// load, per topic. Every partition prefers the member with the highest
// hash(identity, member address) score, as in plain rendezvous hashing; a member hosts at
// most ceil(partitions/members) and at least floor(partitions/members) partitions of a
// topic, the partitions above the cap going to their next preferred member and members
// below the floor taking the partitions that prefer them most. Plain rendezvous over 3 agents leaves one with
// none of 9 partitions in 7.7% of address draws; with the cap every agent gets 3, while a
// joining member still takes mostly partitions that prefer it.
//
// All members compute the same placement from the same inputs (the member list and the
// topics in their mirror); while those differ for a moment, the epoch fence keeps writes
// safe and the rebalancers converge.
type Placement struct {
	mirror *coordination.Mirror

	mu    sync.Mutex
	key   string                      // the hosts the cache was built for
	cache map[string]map[int32]string // topic -> partition -> address
}

func newPlacement(m *coordination.Mirror) *Placement {
	return &Placement{mirror: m}
}

// Owner returns the address of the member that hosts p among members ("" if none can).
func (pl *Placement) Owner(members []*cluster.Member, p coordination.Partition) string {
	var hosts []string
	for _, m := range members {
		if m.HasKind(PartitionKind) {
			hosts = append(hosts, m.Address())
		}
	}
	if len(hosts) == 0 {
		return ""
	}
	sort.Strings(hosts)
	spec, ok := pl.mirror.Topic(p.Topic)
	if !ok || p.Partition < 0 || p.Partition >= spec.Partitions {
		return topChoice(Identity(p), hosts) // unknown here yet: plain rendezvous
	}
	key := strings.Join(hosts, ",")
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.cache == nil || pl.key != key {
		pl.cache, pl.key = map[string]map[int32]string{}, key
	}
	byTopic, ok := pl.cache[p.Topic]
	if !ok || len(byTopic) != int(spec.Partitions) {
		byTopic = balance(p.Topic, spec.Partitions, hosts)
		pl.cache[p.Topic] = byTopic
	}
	return byTopic[p.Partition]
}

// Score is the rendezvous-hashing score of host for the thing named identity: the same
// on every agent, and spread evenly over hosts even for names that differ only in their
// last bytes (orders/1, orders/2), which FNV alone is not.
func Score(identity, host string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(identity))
	h.Write([]byte{0})
	h.Write([]byte(host))
	// FNV alone mixes its last bytes poorly; a final avalanche step spreads them.
	return Mix64(h.Sum64())
}

// Mix64 is MurmurHash3's 64-bit finalizer: every bit of x moves every bit of the result,
// so that values with a pattern (counting up, of one parity) spread evenly.
func Mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func topChoice(identity string, hosts []string) string {
	best, bestScore := "", uint64(0)
	for _, h := range hosts {
		if s := Score(identity, h); best == "" || s > bestScore {
			best, bestScore = h, s
		}
	}
	return best
}

// balance assigns the partitions of one topic: each to its preferred host, then hosts
// above the cap shed the partitions they prefer least to those partitions' next choices.
func balance(topic string, partitions int32, hosts []string) map[int32]string {
	limit := int(math.Ceil(float64(partitions) / float64(len(hosts))))
	prefs := make([][]string, partitions) // hosts by descending score, per partition
	for i := range partitions {
		id := Identity(coordination.Partition{Topic: topic, Partition: i})
		order := append([]string(nil), hosts...)
		sort.Slice(order, func(a, b int) bool { return Score(id, order[a]) > Score(id, order[b]) })
		prefs[i] = order
	}
	out := make(map[int32]string, partitions)
	load := map[string]int{}
	rank := make([]int, partitions)
	for i := range partitions {
		out[i] = prefs[i][0]
		load[prefs[i][0]]++
	}
	for moved := true; moved; {
		moved = false
		for _, h := range hosts {
			for load[h] > limit {
				// Shed the partition whose score for h is lowest to its next host with room.
				victim, low := int32(-1), uint64(math.MaxUint64)
				for i := range partitions {
					if out[i] != h {
						continue
					}
					if s := Score(Identity(coordination.Partition{Topic: topic, Partition: i}), h); s < low {
						victim, low = i, s
					}
				}
				for rank[victim]++; rank[victim] < len(hosts); rank[victim]++ {
					if next := prefs[victim][rank[victim]]; load[next] < limit {
						out[victim] = next
						load[h]--
						load[next]++
						moved = true
						break
					}
				}
			}
		}
	}
	// Hosts left below floor(partitions/hosts) (the cap lets others keep one more) take,
	// from hosts above the floor, the partitions that prefer them most.
	floor := int(partitions) / len(hosts)
	for _, h := range hosts {
		for load[h] < floor {
			best, high := int32(-1), uint64(0)
			for i := range partitions {
				if from := out[i]; from != h && load[from] > floor {
					if s := Score(Identity(coordination.Partition{Topic: topic, Partition: i}), h); best < 0 || s > high {
						best, high = i, s
					}
				}
			}
			load[out[best]]--
			out[best] = h
			load[h]++
		}
	}
	return out
}

// placementActorName is the per-member actor that spawns and tracks local activations.
const placementActorName = "streamhouse-placement"

// placementLookup is the cluster's identity lookup: like protoactor-go's disthash, each
// member runs a placement actor that activates the identities placed on it and stops those
// a topology change moves away; unlike disthash, it places partitions with Placement
// (balanced), matches terminated actors by value (disthash compares PID pointers and then
// dereferences a nil entry), and its lookups time out as the caller asks.
type placementLookup struct {
	placement *Placement
	timeout   time.Duration
	// leaving is set once the agent starts to leave the cluster: it activates no
	// partition after that (one activated then would hold its lease until the agent's
	// session closed, and its requests unanswered).
	leaving *atomic.Bool
	cluster *cluster.Cluster
	pid     *actor.PID
	sub     *eventstream.Subscription
}

// Get implements cluster.IdentityLookup.
func (l *placementLookup) Get(ci *cluster.ClusterIdentity) *actor.PID {
	owner := l.ownerOf(ci)
	if owner == "" {
		return nil
	}
	res, err := l.cluster.ActorSystem.Root.RequestFuture(actor.NewPID(owner, placementActorName),
		&cluster.ActivationRequest{ClusterIdentity: ci}, l.timeout).Result()
	if err != nil {
		return nil
	}
	if r, ok := res.(*cluster.ActivationResponse); ok {
		return r.Pid
	}
	return nil
}

func (l *placementLookup) ownerOf(ci *cluster.ClusterIdentity) string {
	members := l.cluster.MemberList.Members().Members()
	if ci.Kind == PartitionKind {
		if p, err := parseIdentity(ci.Identity); err == nil {
			return l.placement.Owner(members, p)
		}
	}
	var hosts []string
	for _, m := range members {
		if m.HasKind(ci.Kind) {
			hosts = append(hosts, m.Address())
		}
	}
	return topChoice(ci.Kind+"/"+ci.Identity, hosts)
}

// RemovePid implements cluster.IdentityLookup.
func (l *placementLookup) RemovePid(ci *cluster.ClusterIdentity, pid *actor.PID) {
	l.cluster.MemberList.BroadcastEvent(&cluster.ActivationTerminated{Pid: pid, ClusterIdentity: ci}, true)
}

// Setup implements cluster.IdentityLookup.
func (l *placementLookup) Setup(c *cluster.Cluster, _ []string, _ bool) {
	l.cluster = c
	props := actor.PropsFromProducer(func() actor.Actor { return &placementActor{l: l, actors: map[string]activation{}} },
		actor.WithSupervisor(stopOnPanic))
	l.pid, _ = c.ActorSystem.Root.SpawnNamed(props, placementActorName)
	l.sub = c.ActorSystem.EventStream.Subscribe(func(ev any) {
		if t, ok := ev.(*cluster.ClusterTopology); ok {
			c.ActorSystem.Root.Send(l.pid, t)
		}
	})
}

// Shutdown implements cluster.IdentityLookup.
func (l *placementLookup) Shutdown() {
	l.cluster.ActorSystem.EventStream.Unsubscribe(l.sub)
	_ = l.cluster.ActorSystem.Root.PoisonFuture(l.pid).Wait()
}

type activation struct {
	id  *cluster.ClusterIdentity
	pid *actor.PID
}

// stopOnPanic is the placement actor's strategy for the partitions it spawns: one whose
// Receive panicked is stopped, not restarted as protoactor's default strategy would. A
// restart puts a new instance on the mailbox without stopping the old one, whose writer
// would then hold its batches' budget, its waiters and its compactor entry for good;
// stopping releases them (Stopping) and its lease, and the partition's next request
// activates it anew.
var stopOnPanic = actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective })

type placementActor struct {
	l      *placementLookup
	actors map[string]activation
}

func (p *placementActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *cluster.ActivationRequest:
		key := m.ClusterIdentity.AsKey()
		if a, ok := p.actors[key]; ok {
			ctx.Respond(&cluster.ActivationResponse{Pid: a.pid})
			return
		}
		kind := p.l.cluster.GetClusterKind(m.ClusterIdentity.Kind)
		if kind == nil || p.l.leaving.Load() || p.l.ownerOf(m.ClusterIdentity) != p.l.cluster.ActorSystem.Address() {
			// Not here: a requester whose view of the members lags (it has not seen an
			// agent join yet) asks the agent a partition is moving from; activated
			// again there, it would take the lease back until this agent's rebalancer
			// stopped it. The requester tries again, its view caught up.
			ctx.Respond(&cluster.ActivationResponse{Failed: true})
			return
		}
		pid := ctx.SpawnPrefix(cluster.WithClusterIdentity(kind.Props, m.ClusterIdentity), m.ClusterIdentity.Identity)
		kind.Inc()
		p.actors[key] = activation{id: m.ClusterIdentity, pid: pid}
		ctx.Respond(&cluster.ActivationResponse{Pid: pid})
	case *actor.Terminated:
		for key, a := range p.actors {
			if a.pid.Equal(m.Who) {
				delete(p.actors, key)
				if kind, ok := p.l.cluster.TryGetClusterKind(a.id.Kind); ok {
					kind.Dec()
				}
				p.l.RemovePid(a.id, a.pid)
			}
		}
	case *cluster.ClusterTopology:
		self := p.l.cluster.ActorSystem.Address()
		for _, a := range p.actors {
			if p.l.ownerOf(a.id) != self {
				ctx.Poison(a.pid)
			}
		}
	case *actor.Stopping:
		for _, a := range p.actors {
			_ = ctx.PoisonFuture(a.pid).Wait()
		}
	}
}
