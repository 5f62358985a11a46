package kafka

import (
	"hash/fnv"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/streamhouse/streamhouse/actors"
	"github.com/streamhouse/streamhouse/coordination"
)

// broker is an agent as Kafka clients see it.
type broker struct {
	id   int32
	host string
	port int32
	zone string
	node string
}

// BrokerID is the Kafka node id of an agent: a hash of its name, stable across restarts
// and the same on every agent, so no registry of ids is needed.
func BrokerID(node string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(node))
	return int32(h.Sum32() & 0x7fffffff)
}

// brokers returns the live agents that serve Kafka, sorted by id; this agent is always
// among them (it may not be in the mirror for a moment after it starts).
func (s *Server) brokers() []broker {
	var out []broker
	self := false
	add := func(n coordination.NodeInfo) {
		host, port, err := net.SplitHostPort(n.Kafka)
		if err != nil {
			return
		}
		p, err := strconv.ParseInt(port, 10, 32)
		if err != nil {
			return
		}
		self = self || n.Node == s.opts.Self.Node
		out = append(out, broker{id: BrokerID(n.Node), host: host, port: int32(p), zone: n.Zone, node: n.Node})
	}
	if s.mirror != nil { // nil: a server of no cluster (unit tests), itself alone
		for _, n := range s.mirror.Nodes() {
			add(n)
		}
	}
	if !self {
		add(s.opts.Self)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// zoneOf reads the zone a client names in its client.id: a "streamhouse_zone=<zone>" or
// "zone=<zone>" element, elements separated by commas, semicolons or spaces.
func zoneOf(clientID string) string {
	for _, el := range strings.FieldsFunc(clientID, func(r rune) bool { return r == ',' || r == ';' || r == ' ' }) {
		for _, prefix := range []string{"streamhouse_zone=", "zone="} {
			if z, ok := strings.CutPrefix(el, prefix); ok && z != "" {
				return z
			}
		}
	}
	return ""
}

// inZone returns the brokers of zone, or all of them when zone is empty or has none.
func inZone(all []broker, zone string) []broker {
	if zone == "" {
		return all
	}
	var out []broker
	for _, b := range all {
		if b.zone == zone {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return all
	}
	return out
}

// leaderFor picks the broker a client should send p's requests to: its owner when the
// owner is among brokers (no extra hop), otherwise one chosen by rendezvous hashing, so
// that a partition's requests from one zone go to one agent and the zone's agents share
// the partitions.
func (s *Server) leaderFor(p coordination.Partition, brokers []broker) broker {
	if o, ok := s.mirror.Owner(p); ok {
		for _, b := range brokers {
			if b.node == o.Node {
				return b
			}
		}
	}
	return rendezvous(brokers, p.String())
}

// rendezvous picks the broker with the highest score for key (actors.Score, the
// partitions' placement's).
func rendezvous(brokers []broker, key string) broker {
	var best broker
	var bestScore uint64
	for i, b := range brokers {
		if score := actors.Score(key, b.node); i == 0 || score > bestScore {
			best, bestScore = b, score
		}
	}
	return best
}
