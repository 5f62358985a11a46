package coordination

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Mirror is the decoded view of a cluster's topics, partition leases, high-water marks and
// nodes that agents and the gateway read instead of issuing their own Gets. Segments and
// group offsets are not mirrored: they grow with data, and are read by range when needed.
type Mirror struct {
	c  *Client
	ks *Keyspace
}

// Owner is the current holder of a partition's lease.
type Owner struct {
	Partition
	NodeInfo
	Epoch      int64
	AcquiredAt time.Time
	// Lease is the etcd lease (the owner's session) the lease key is attached to.
	Lease int64
}

// NewMirror returns an empty mirror; Load it, then run Watch.
func (c *Client) NewMirror() *Mirror {
	k := c.keys
	m := &Mirror{c: c}
	m.ks = NewKeyspace(k.Root(), []string{k.Topics(), k.Leases(), k.HWMs(), k.Nodes()}, m.decode, c.log)
	return m
}

func (m *Mirror) decode(key string, value []byte) (any, error) {
	k := m.c.keys
	switch {
	case strings.HasPrefix(key, k.Topics()):
		return decodeTopic(strings.TrimPrefix(key, k.Topics()), value)
	case strings.HasPrefix(key, k.Leases()):
		return decodeJSON[LeaseValue](value)
	case strings.HasPrefix(key, k.HWMs()):
		return strconv.ParseInt(string(value), 10, 64)
	case strings.HasPrefix(key, k.Nodes()):
		return decodeJSON[nodeValue](value)
	}
	return nil, nil
}

func decodeJSON[T any](value []byte) (any, error) {
	var v T
	if err := json.Unmarshal(value, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// Load reads the current state.
func (m *Mirror) Load(ctx context.Context) error { return m.ks.Load(ctx, m.c.etcd, 0) }

// Watch keeps the mirror current until ctx ends.
func (m *Mirror) Watch(ctx context.Context) error { return m.ks.Watch(ctx, m.c.etcd) }

// Revision is the etcd revision the mirror reflects.
func (m *Mirror) Revision() int64 { return m.ks.Revision() }

// WaitForRevision waits until the mirror reflects rev.
func (m *Mirror) WaitForRevision(ctx context.Context, rev int64) error {
	return m.ks.WaitForRevision(ctx, rev)
}

// Observe runs fn after every change.
func (m *Mirror) Observe(fn func()) { m.ks.Observe(fn) }

// ObservePlacement registers fn to run after a change of the topics, the leases or the
// nodes: what partitions' placement and ownership follow, and not the high-water marks
// that change with every commit of the cluster.
func (m *Mirror) ObservePlacement(fn func()) {
	m.ks.Observe(fn, m.c.keys.Topics(), m.c.keys.Leases(), m.c.keys.Nodes())
}

// Topics returns the live topics in name order.
func (m *Mirror) Topics() []TopicSpec {
	var out []TopicSpec
	for _, kv := range m.ks.Prefix(m.c.keys.Topics()) {
		if s := kv.Value.(TopicSpec); !s.Deleted() {
			s.Incarnation = kv.CreateRevision
			out = append(out, s)
		}
	}
	return out
}

// StoppedDeletedTopics returns the deleted topics none of whose partitions has an owner
// left: PurgeTopic can remove their keys now (sweeper.Sweeper.PurgeOnStop).
func (m *Mirror) StoppedDeletedTopics() []TopicSpec {
	var out []TopicSpec
	for _, kv := range m.ks.Prefix(m.c.keys.Topics()) {
		if s := kv.Value.(TopicSpec); s.Deleted() && len(m.ks.Prefix(m.c.keys.TopicLeases(s.Name))) == 0 {
			s.Incarnation = kv.CreateRevision
			out = append(out, s)
		}
	}
	return out
}

// Topic returns a live topic.
func (m *Mirror) Topic(name string) (TopicSpec, bool) {
	kv, ok := m.ks.Get(m.c.keys.Topic(name))
	if !ok {
		return TopicSpec{}, false
	}
	s := kv.Value.(TopicSpec)
	s.Incarnation = kv.CreateRevision
	return s, !s.Deleted()
}

// Owner returns the current lease holder of a partition.
func (m *Mirror) Owner(p Partition) (Owner, bool) {
	kv, ok := m.ks.Get(m.c.keys.Lease(p.Topic, p.Partition))
	if !ok {
		return Owner{}, false
	}
	v := kv.Value.(LeaseValue)
	return Owner{Partition: p, NodeInfo: v.NodeInfo, Epoch: kv.CreateRevision, AcquiredAt: v.AcquiredAt, Lease: kv.Lease}, true
}

// Owners returns every held partition lease, in key order.
func (m *Mirror) Owners() []Owner {
	prefix := m.c.keys.Leases()
	var out []Owner
	for _, kv := range m.ks.Prefix(prefix) {
		topic, partition, ok := parsePartitionKey(strings.TrimPrefix(kv.Key, prefix))
		if !ok {
			continue
		}
		v := kv.Value.(LeaseValue)
		out = append(out, Owner{Partition: Partition{topic, partition}, NodeInfo: v.NodeInfo, Epoch: kv.CreateRevision, AcquiredAt: v.AcquiredAt, Lease: kv.Lease})
	}
	return out
}

// HWM returns a partition's high-water mark as mirrored (0 if never written).
func (m *Mirror) HWM(p Partition) int64 {
	kv, ok := m.ks.Get(m.c.keys.HWM(p.Topic, p.Partition))
	if !ok {
		return 0
	}
	return kv.Value.(int64)
}

// Nodes returns the live agents in name order.
func (m *Mirror) Nodes() []NodeInfo {
	var out []NodeInfo
	for _, kv := range m.ks.Prefix(m.c.keys.Nodes()) {
		out = append(out, kv.Value.(nodeValue).NodeInfo)
	}
	return out
}
