package coordination

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// DefaultRoot is the default root prefix of a cluster's keys. Several clusters can share
// one etcd by choosing different roots.
const DefaultRoot = "/streamhouse"

// Key classes under the root. Each line shows an example key and its JSON value, exactly as
// `etcdctl get --prefix /streamhouse/` prints them.
const (
	// TopicsPrefix holds one TopicSpec per topic:
	//   /streamhouse/topics/orders
	//   {"name":"orders","partitions":6,"retention_ms":604800000,"linger_ms":5,"segment_bytes":8388608,"created_at":"2026-11-27T09:00:00Z"}
	TopicsPrefix = "topics/"

	// LeasesPrefix holds the lease of each active partition, attached to the owner's etcd
	// session lease, so that it disappears when the owner does. Its CreateRevision is the
	// partition's epoch:
	//   /streamhouse/leases/orders/3
	//   {"node":"agent-1","addr":"10.0.0.5:8090","zone":"zone-a","acquired_at":"2026-11-27T09:00:01Z"}
	LeasesPrefix = "leases/"

	// HWMPrefix holds each partition's high-water mark: the next offset to assign, which is
	// the log end offset of the committed log. A JSON number:
	//   /streamhouse/hwm/orders/3
	//   1200
	HWMPrefix = "hwm/"

	// SegmentsPrefix indexes committed segments by partition and base offset (20-digit
	// zero padded so that lexical order is offset order):
	//   /streamhouse/segments/orders/3/00000000000000001000
	//   {"object":"data/agent-1/m4x2k1-0000000412.obj","offset":1048576,"base":1000,"last":1199,...}
	// Objects are written by an agent and may hold segments of several partitions; the
	// segment is bytes [offset, offset+zbytes) of the object.
	SegmentsPrefix = "segments/"

	// GroupsPrefix holds consumer-group offsets. Group names are path-escaped:
	//   /streamhouse/groups/billing/offsets/orders/3
	//   {"offset":1150,"metadata":"","committed_at":"2026-11-27T09:05:00Z"}
	GroupsPrefix = "groups/"

	// NodesPrefix holds one key per live agent, attached to its session lease:
	//   /streamhouse/nodes/agent-1
	//   {"node":"agent-1","addr":"10.0.0.5:8090","zone":"zone-a","started_at":"2026-11-27T08:59:58Z"}
	NodesPrefix = "nodes/"

	// ClusterPrefix is left to protoactor-go's etcd cluster provider (member records).
	ClusterPrefix = "cluster/"

	// LocksPrefix holds etcd mutexes (go.etcd.io/etcd/client/v3/concurrency) for cluster
	// chores that one agent at a time does, one key per contender attached to its session:
	//   /streamhouse/locks/sweeper/694d9a1b2c3d4e5f
	//   (empty)
	LocksPrefix = "locks/"

	// TombstonesPrefix records segments taken out of the index (merged, expired, or of a
	// deleted topic): the objects they named and when, so that the orphan sweeper deletes
	// an object only a grace period after the last reader could have learnt its name:
	//   /streamhouse/tombstones/orders/3/00000000000000000412-00000000000000000007
	//   {"objects":["data/agent-1/m4x2k1-0000000412.obj"],"removed_at":"2026-11-27T09:10:00Z","reason":"merge"}
	TombstonesPrefix = "tombstones/"

	// ProducersPrefix holds, per partition, the idempotent producers that wrote to it, a
	// key per producer id: its epoch and its last batches' sequence numbers and offsets,
	// written in the transaction that commits the last, so that a new owner recognises a
	// retry of a batch already written (ProducerState). A key per producer keeps each
	// commit's write to the producers in its segment, however many the partition
	// remembers:
	//   /streamhouse/producers/orders/3/1042
	//   {"epoch":0,"first_seq":40,"last_seq":49,"base":1190,"written_ms":1795770300000,
	//    "earlier":[{"first_seq":30,"last_seq":39,"base":1170}],"start_seq":0}
	// Before 2026-12-05 a partition kept all of them in one key,
	// /streamhouse/producers/orders/3, holding a JSON object by producer id; a new owner
	// that finds it moves it to the keys above (Lease.Producers).
	ProducersPrefix = "producers/"

	// ProducerIDsKey is written once per new idempotent producer: the revision of the
	// write is the producer's id, unique in the cluster without a counter to contend on.
	//   /streamhouse/producer-ids
	//   (empty)
	ProducerIDsKey = "producer-ids"

	// GroupCoordinatorsPrefix holds, per consumer group a Kafka listener coordinates,
	// the coordinating agent's claim, attached to its session lease. Its CreateRevision
	// is the claim's epoch, on which the coordinator's offset commits are fenced, as a
	// partition owner's writes are on its lease (GroupClaim). Group names are
	// path-escaped:
	//   /streamhouse/group-coordinators/billing
	//   {"node":"agent-1","addr":"10.0.0.5:8090","zone":"zone-a","acquired_at":"2026-11-27T09:04:58Z"}
	GroupCoordinatorsPrefix = "group-coordinators/"

	groupOffsetsInfix = "/offsets/"
	offsetDigits      = 20
)

// Keys builds the keys of one cluster under its root prefix.
type Keys struct {
	root string // always ends with "/"
}

// NewKeys returns the key layout under root (DefaultRoot when empty). The root must start
// with "/"; a trailing "/" is optional.
func NewKeys(root string) (Keys, error) {
	if root == "" {
		root = DefaultRoot
	}
	if !strings.HasPrefix(root, "/") || strings.Contains(root, "//") {
		return Keys{}, fmt.Errorf("%w: root prefix %q must start with / and have no empty elements", ErrInvalidArgument, root)
	}
	return Keys{root: strings.TrimSuffix(root, "/") + "/"}, nil
}

// Root is the root prefix, ending with "/".
func (k Keys) Root() string { return k.root }

// Topics is the prefix of every topic key.
func (k Keys) Topics() string { return k.root + TopicsPrefix }

// Topic is /root/topics/<topic>.
func (k Keys) Topic(topic string) string { return k.root + TopicsPrefix + topic }

// Leases is the prefix of every partition lease key.
func (k Keys) Leases() string { return k.root + LeasesPrefix }

// TopicLeases is the prefix of a topic's partitions' lease keys.
func (k Keys) TopicLeases(topic string) string { return k.root + LeasesPrefix + topic + "/" }

// Lease is /root/leases/<topic>/<partition>.
func (k Keys) Lease(topic string, partition int32) string {
	return k.root + LeasesPrefix + topic + "/" + itoa32(partition)
}

// HWMs is the prefix of every high-water-mark key.
func (k Keys) HWMs() string { return k.root + HWMPrefix }

// HWM is /root/hwm/<topic>/<partition>.
func (k Keys) HWM(topic string, partition int32) string {
	return k.root + HWMPrefix + topic + "/" + itoa32(partition)
}

// Segments is the prefix of one partition's segment index, ending with "/".
func (k Keys) Segments(topic string, partition int32) string {
	return k.root + SegmentsPrefix + topic + "/" + itoa32(partition) + "/"
}

// Segment is /root/segments/<topic>/<partition>/<base:020d>.
func (k Keys) Segment(topic string, partition int32, base int64) string {
	return k.Segments(topic, partition) + PadOffset(base)
}

// Tombstones is the prefix of every tombstone.
func (k Keys) Tombstones() string { return k.root + TombstonesPrefix }

// Producers is the prefix of every partition's idempotent producer states.
func (k Keys) Producers() string { return k.root + ProducersPrefix }

// ProducerStates is the prefix of one partition's idempotent producer states.
func (k Keys) ProducerStates(topic string, partition int32) string {
	return k.legacyProducerStates(topic, partition) + "/"
}

// ProducerState is the key of one idempotent producer's state in one partition.
func (k Keys) ProducerState(topic string, partition int32, id int64) string {
	return k.ProducerStates(topic, partition) + strconv.FormatInt(id, 10)
}

// legacyProducerStates is the key that held all of a partition's producer states before
// they had a key each (ProducersPrefix).
func (k Keys) legacyProducerStates(topic string, partition int32) string {
	return k.root + ProducersPrefix + topic + "/" + itoa32(partition)
}

// ProducerIDs is the key whose write revisions are producer ids.
func (k Keys) ProducerIDs() string { return k.root + ProducerIDsKey }

// Tombstone is /root/tombstones/<topic>/<partition>/<id>.
func (k Keys) Tombstone(topic string, partition int32, id string) string {
	return k.root + TombstonesPrefix + topic + "/" + itoa32(partition) + "/" + id
}

// Groups is the prefix of every consumer-group key.
func (k Keys) Groups() string { return k.root + GroupsPrefix }

// GroupOffsets is the prefix of one group's offsets, ending with "/".
func (k Keys) GroupOffsets(group string) string {
	return k.root + GroupsPrefix + url.PathEscape(group) + groupOffsetsInfix
}

// GroupOffset is /root/groups/<group>/offsets/<topic>/<partition>.
func (k Keys) GroupOffset(group, topic string, partition int32) string {
	return k.GroupOffsets(group) + topic + "/" + itoa32(partition)
}

// GroupCoordinators is the prefix of the groups' coordinator claims.
func (k Keys) GroupCoordinators() string { return k.root + GroupCoordinatorsPrefix }

// GroupCoordinator is /root/group-coordinators/<group>.
func (k Keys) GroupCoordinator(group string) string {
	return k.GroupCoordinators() + url.PathEscape(group)
}

// Nodes is the prefix of the live agents' keys.
func (k Keys) Nodes() string { return k.root + NodesPrefix }

// Node is /root/nodes/<node>.
func (k Keys) Node(node string) string { return k.root + NodesPrefix + node }

// Lock is the etcd mutex named name (LocksPrefix), without the "/" that
// concurrency.NewMutex adds before each contender's key.
func (k Keys) Lock(name string) string { return k.root + LocksPrefix + name }

// Cluster is the prefix handed to protoactor-go's etcd cluster provider.
func (k Keys) Cluster() string { return k.root + ClusterPrefix }

// PadOffset formats an offset with 20 digits, the width of the largest int64.
func PadOffset(o int64) string {
	s := strconv.FormatInt(o, 10)
	if len(s) >= offsetDigits {
		return s
	}
	return strings.Repeat("0", offsetDigits-len(s)) + s
}

// parsePartitionKey splits "<topic>/<partition>" (the tail of a lease or hwm key).
func parsePartitionKey(tail string) (string, int32, bool) {
	i := strings.LastIndexByte(tail, '/')
	if i <= 0 {
		return "", 0, false
	}
	p, err := strconv.ParseInt(tail[i+1:], 10, 32)
	if err != nil || p < 0 {
		return "", 0, false
	}
	return tail[:i], int32(p), true
}

func itoa32(p int32) string { return strconv.FormatInt(int64(p), 10) }
