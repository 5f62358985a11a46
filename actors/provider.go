package actors

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/asynkron/protoactor-go/cluster"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/streamhouse/streamhouse/coordination"
)

// memberRecord is stored under <root>/cluster/members/<actor system id>, attached to the
// agent's session lease.
type memberRecord struct {
	ID    string   `json:"id"`
	Host  string   `json:"host"`
	Port  int32    `json:"port"`
	Kinds []string `json:"kinds"`
	Node  string   `json:"node"`
	Zone  string   `json:"zone,omitempty"`
}

// sessionProvider is a protoactor-go cluster provider whose membership is the agents' etcd
// sessions. It replaces the stock etcd provider (DESIGN.md §7), whose member TTL is fixed
// at 3s and whose evicted members never rejoin: here a member is exactly as alive as the
// session that fences its writes, with the session's TTL, and an agent that loses its
// session starts a new member with a new id.
type sessionProvider struct {
	session *coordination.Session
	etcd    *clientv3.Client
	prefix  string

	mu      sync.Mutex
	members map[string]memberRecord
	cancel  context.CancelFunc
	done    chan struct{}
	self    string
}

func newSessionProvider(c *coordination.Client, s *coordination.Session) *sessionProvider {
	return &sessionProvider{session: s, etcd: c.Etcd(), prefix: c.Keys().Cluster() + "members/"}
}

// StartMember implements cluster.ClusterProvider.
func (p *sessionProvider) StartMember(c *cluster.Cluster) error {
	host, portStr, err := net.SplitHostPort(c.ActorSystem.Address())
	if err != nil {
		return fmt.Errorf("cluster member address %q: %w", c.ActorSystem.Address(), err)
	}
	port, _ := strconv.Atoi(portStr)
	node := p.session.Node()
	rec := memberRecord{ID: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: c.GetClusterKinds(), Node: node.Node, Zone: node.Zone}
	p.self = rec.ID
	if _, err := p.etcd.Put(context.Background(), p.prefix+rec.ID, mustMarshal(rec), clientv3.WithLease(p.session.LeaseID())); err != nil {
		return fmt.Errorf("register cluster member: %w", err)
	}
	return p.start(c)
}

// StartClient implements cluster.ClusterProvider: it follows membership without joining.
func (p *sessionProvider) StartClient(c *cluster.Cluster) error { return p.start(c) }

func (p *sessionProvider) start(c *cluster.Cluster) error {
	resp, err := p.etcd.Get(context.Background(), p.prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("list cluster members: %w", err)
	}
	p.members = map[string]memberRecord{}
	for _, kv := range resp.Kvs {
		var m memberRecord
		if json.Unmarshal(kv.Value, &m) == nil {
			p.members[m.ID] = m
		}
	}
	p.publish(c)
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go p.watch(ctx, c, resp.Header.Revision+1)
	return nil
}

// stopWatching ends the watch of membership, and waits for it. The cluster's shutdown
// calls the provider's only when graceful: a membership that lost its session stops its
// watch so, which would otherwise follow the members for as long as the agent runs.
func (p *sessionProvider) stopWatching() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
}

// watch follows membership changes from rev; members whose session expires disappear.
func (p *sessionProvider) watch(ctx context.Context, c *cluster.Cluster, rev int64) {
	defer close(p.done)
	for ctx.Err() == nil {
		wch := p.etcd.Watch(clientv3.WithRequireLeader(ctx), p.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			p.mu.Lock()
			for _, ev := range resp.Events {
				id := string(ev.Kv.Key[len(p.prefix):])
				var m memberRecord
				if ev.Type == clientv3.EventTypePut && json.Unmarshal(ev.Kv.Value, &m) == nil {
					p.members[id] = m
				} else {
					delete(p.members, id)
				}
				rev = ev.Kv.ModRevision + 1
			}
			p.mu.Unlock()
			p.publish(c)
		}
		if ctx.Err() != nil {
			return
		}
		// Compacted or broken: reload the full list and carry on from there.
		resp, err := p.etcd.Get(ctx, p.prefix, clientv3.WithPrefix())
		if err != nil {
			continue
		}
		p.mu.Lock()
		p.members = map[string]memberRecord{}
		for _, kv := range resp.Kvs {
			var m memberRecord
			if json.Unmarshal(kv.Value, &m) == nil {
				p.members[m.ID] = m
			}
		}
		p.mu.Unlock()
		p.publish(c)
		rev = resp.Header.Revision + 1
	}
}

func (p *sessionProvider) publish(c *cluster.Cluster) {
	p.mu.Lock()
	members := make(cluster.Members, 0, len(p.members))
	for _, m := range p.members {
		members = append(members, &cluster.Member{Id: m.ID, Host: m.Host, Port: m.Port, Kinds: m.Kinds})
	}
	p.mu.Unlock()
	c.MemberList.UpdateClusterTopology(members)
}

// Member is a cluster member as its record in etcd describes it.
type Member struct {
	ID, Address, Node, Zone string
	Kinds                   []string
}

// Members returns the members this provider knows, in no particular order.
func (p *sessionProvider) Members() []Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Member, 0, len(p.members))
	for _, m := range p.members {
		out = append(out, Member{ID: m.ID, Address: net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port))), Node: m.Node, Zone: m.Zone, Kinds: m.Kinds})
	}
	return out
}

// deregister deletes this member's record, so that the other members recompute ownership
// and start taking its partitions (they wait, fenced, until it releases each lease).
func (p *sessionProvider) deregister(ctx context.Context) error {
	if p.self == "" {
		return nil
	}
	if _, err := p.etcd.Delete(ctx, p.prefix+p.self); err != nil {
		return fmt.Errorf("deregister cluster member: %w", err)
	}
	return nil
}

// Shutdown implements cluster.ClusterProvider.
func (p *sessionProvider) Shutdown(bool) error {
	p.stopWatching()
	if p.self != "" {
		if _, err := p.etcd.Delete(context.Background(), p.prefix+p.self); err != nil {
			return fmt.Errorf("deregister cluster member: %w", err)
		}
	}
	return nil
}

func mustMarshal(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
