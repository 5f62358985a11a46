package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"time"

	"github.com/streamhouse/streamhouse/tests/harness"
)

// Fault kinds, each healed before the next one starts.
const (
	killAgent    = "kill -9 agent"
	pauseAgent   = "SIGSTOP agent past TTL"
	restartAgent = "restart agent"
	killEtcd     = "kill -9 etcd member"
	restartMinIO = "kill -9 + restart MinIO"
	cutAgent     = "cut agent from etcd"
	cutStore     = "cut agent from MinIO"
	cutPeers     = "cut agent from agents"
)

var faultKinds = []string{killAgent, pauseAgent, restartAgent, killEtcd, restartMinIO, cutAgent, cutStore, cutPeers}

// kindsByName finds fault kinds by a word of their name ("etcd", "SIGSTOP", "cut"...),
// for CHAOS_KINDS.
func kindsByName(words []string) ([]string, error) {
	var out []string
	for _, w := range words {
		n := len(out)
		for _, k := range faultKinds {
			if strings.Contains(strings.ToLower(k), strings.ToLower(strings.TrimSpace(w))) {
				out = append(out, k)
			}
		}
		if len(out) == n {
			return nil, fmt.Errorf("no fault kind matches %q (kinds: %s)", w, strings.Join(faultKinds, "; "))
		}
	}
	return out, nil
}

// cluster is what faults act on.
type cluster struct {
	etcd    *harness.EtcdCluster
	minio   *harness.MinIO
	agents  []*harness.Agent
	proxies [][]*harness.Proxy // per agent, one per etcd member
	stores  []*harness.Proxy   // per agent, to MinIO
	peers   []*harness.Proxy   // per agent, in front of its remote: what the others dial
	ttl     time.Duration
}

// fault is one injected fault.
type fault struct {
	Kind, Target         string
	Start, Healed, Ready time.Time
}

// schedule returns n fault kinds: every kind once per round, in a seeded order.
func schedule(n int, kinds []string, rng *rand.Rand) []string {
	var out []string
	for len(out) < n {
		round := append([]string(nil), kinds...)
		rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		out = append(out, round...)
	}
	return out[:n]
}

// inject applies a fault of kind, holds it, and heals it. The holds are time.Sleep on
// purpose: a fault lasts a chosen time, it does not wait for a condition.
func (c *cluster) inject(ctx context.Context, kind string, rng *rand.Rand) (fault, error) {
	hold := time.Duration(1000+rng.IntN(2000)) * time.Millisecond
	past := c.ttl + time.Duration(500+rng.IntN(1500))*time.Millisecond
	i := rng.IntN(len(c.agents))
	f := fault{Kind: kind, Target: c.agents[i].Config.Node, Start: time.Now()}
	var err error
	switch kind {
	case killAgent:
		a := c.agents[i]
		if err = a.Process.Kill(); err == nil {
			time.Sleep(hold)
			err = a.Restart(ctx)
		}
	case pauseAgent:
		a := c.agents[i]
		if err = a.Signal(syscall.SIGSTOP); err == nil {
			time.Sleep(past)
			err = a.Signal(syscall.SIGCONT)
		}
	case restartAgent:
		a := c.agents[i]
		if err = a.Stop(); err == nil {
			err = a.Restart(ctx)
		}
	case killEtcd:
		m := c.etcd.Members[rng.IntN(len(c.etcd.Members))]
		f.Target = m.Endpoint
		if err = m.Process.Kill(); err == nil {
			time.Sleep(hold)
			err = m.Restart(ctx)
		}
	case restartMinIO:
		f.Target = "minio"
		if err = c.minio.Process.Kill(); err == nil {
			time.Sleep(hold)
			err = c.minio.Restart(ctx)
		}
	case cutAgent:
		for _, p := range c.proxies[i] {
			p.Cut()
		}
		time.Sleep(past)
		for _, p := range c.proxies[i] {
			p.Heal()
		}
	case cutStore:
		c.stores[i].Cut()
		time.Sleep(past)
		c.stores[i].Heal()
	case cutPeers:
		// Nothing reaches the agent from the others, its answers to them included; it
		// keeps its etcd session and its partitions.
		c.peers[i].Cut()
		time.Sleep(past)
		c.peers[i].Heal()
	default:
		err = fmt.Errorf("unknown fault %q", kind)
	}
	f.Healed = time.Now()
	if err != nil {
		return f, fmt.Errorf("%s on %s: %w", kind, f.Target, err)
	}
	return f, nil
}

// etcdEndpoints is the --etcd flag of agent i: every member through its proxy.
func (c *cluster) etcdEndpoints(i int) string {
	var eps []string
	for _, p := range c.proxies[i] {
		eps = append(eps, "http://"+p.Addr)
	}
	return strings.Join(eps, ",")
}
