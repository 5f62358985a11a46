package coordination

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxGroupNameLen bounds consumer-group names.
const MaxGroupNameLen = 249

// MaxOffsetMetadataBytes bounds the metadata a group commits with an offset: Kafka's
// offset.metadata.max.bytes default. Every commit is an etcd value, read back whole by
// every offset fetch of the group.
const MaxOffsetMetadataBytes = 4096

// ErrOffsetMetadataTooLarge: a committed offset's metadata is over
// MaxOffsetMetadataBytes. It matches ErrInvalidArgument.
var ErrOffsetMetadataTooLarge = fmt.Errorf("%w: offset metadata over %d bytes", ErrInvalidArgument, MaxOffsetMetadataBytes)

// ValidateGroupName accepts 1 to 249 bytes of UTF-8 without control characters. Kafka
// clients use free-form group ids, so any such name works; it is path-escaped in keys.
func ValidateGroupName(group string) error {
	if group == "" || len(group) > MaxGroupNameLen || !utf8.ValidString(group) ||
		strings.IndexFunc(group, unicode.IsControl) >= 0 {
		return invalidf("group name %q: want 1-%d bytes of UTF-8 without control characters", group, MaxGroupNameLen)
	}
	return nil
}

// CommitOffsets stores a group's offsets for several partitions in one transaction: all
// or none. Every partition must exist and every offset be within [0, hwm]. At most
// Options.MaxTxnOps partitions, of at most Options.MaxTxnOps-1 topics, per call.
//
// It is for groups without a coordinator (the gRPC API has no membership): while a
// session holds a claim on the group (ClaimGroup, a Kafka group's coordinator), it
// writes nothing and returns ErrGroupClaimed, since an offset set beside the
// coordinator's would move its members back or past records they have not processed.
// Such a group commits through its GroupClaim.
func (c *Client) CommitOffsets(ctx context.Context, group string, offsets map[Partition]GroupOffset) error {
	return c.commitOffsets(ctx, group, offsets, nil)
}

// commitOffsets is CommitOffsets, fenced on claim when it is not nil, else on the group
// having no claim.
func (c *Client) commitOffsets(ctx context.Context, group string, offsets map[Partition]GroupOffset, claim *GroupClaim) error {
	if err := ValidateGroupName(group); err != nil {
		return err
	}
	if len(offsets) == 0 {
		return invalidf("no offsets to commit for group %q", group)
	}
	// etcd bounds each list of a transaction by its --max-txn-ops: the puts, one per
	// partition, and the compares, one per topic and the claim's.
	if len(offsets) > c.opts.MaxTxnOps {
		return invalidf("%d partitions in one commit, at most %d", len(offsets), c.opts.MaxTxnOps)
	}
	parts := make([]Partition, 0, len(offsets))
	named := map[string]bool{}
	for p := range offsets {
		parts = append(parts, p)
		named[p.Topic] = true
	}
	if len(named) >= c.opts.MaxTxnOps {
		return invalidf("%d topics in one commit, at most %d", len(named), c.opts.MaxTxnOps-1)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].String() < parts[j].String() })
	return retryTopicRace(ctx, func() (bool, error) { return c.commitOffsetsOnce(ctx, group, parts, offsets, claim) })
}

// commitOffsetsOnce is one attempt of commitOffsets of parts, sorted; again when a
// topic changed between its read and the transaction (an alter: a delete is then
// ErrTopicNotFound).
func (c *Client) commitOffsetsOnce(ctx context.Context, group string, parts []Partition, offsets map[Partition]GroupOffset, claim *GroupClaim) (bool, error) {
	// Check everything before writing anything. A high-water mark only grows, so an
	// offset within it now stays within it; a topic deleted meanwhile fails the guard.
	// (Only commits without a claim are bounded by it: below.)
	topics := map[string]TopicSpec{}
	var cmps []clientv3.Cmp
	var puts []clientv3.Op
	now := c.now()
	for _, p := range parts {
		o := offsets[p]
		if len(o.Metadata) > MaxOffsetMetadataBytes {
			return false, fmt.Errorf("commit offsets of %q: %s: %w (%d)", group, p, ErrOffsetMetadataTooLarge, len(o.Metadata))
		}
		spec, ok := topics[p.Topic]
		if !ok {
			var rev int64
			var err error
			if spec, rev, err = c.topic(ctx, p.Topic); err != nil {
				return false, fmt.Errorf("commit offsets of %q: %w", group, err)
			}
			topics[p.Topic] = spec
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(c.keys.Topic(p.Topic)), "=", rev))
		}
		if p.Partition < 0 || p.Partition >= spec.Partitions {
			return false, fmt.Errorf("commit offsets of %q: %w: %s has partitions 0..%d", group, ErrPartitionNotFound, p, spec.Partitions-1)
		}
		if o.Offset < 0 {
			return false, fmt.Errorf("commit offsets of %q: %w: %s offset %d is negative", group, ErrOffsetOutOfRange, p, o.Offset)
		}
		// A Kafka group's commits (through its claim) are not bounded by the high-water
		// mark, as Kafka's are not: a consumer of a topic deleted and created again
		// commits positions past the new log's end, and Kafka clients take a refusal as
		// a fatal error (their next fetch is answered out of range and resets them).
		if claim == nil {
			hwm, err := c.hwm(ctx, p.Topic, p.Partition)
			if err != nil {
				return false, fmt.Errorf("commit offsets of %q: %w", group, err)
			}
			if o.Offset > hwm {
				return false, fmt.Errorf("commit offsets of %q: %w: %s offset %d, want 0..%d (the high-water mark)",
					group, ErrOffsetOutOfRange, p, o.Offset, hwm)
			}
		}
		o.CommittedAt = now
		puts = append(puts, clientv3.OpPut(c.keys.GroupOffset(group, p.Topic, p.Partition), mustJSON(o)))
	}
	claimKey, epoch := c.keys.GroupCoordinator(group), int64(0) // no claim
	if claim != nil {
		claimKey, epoch = claim.key, claim.epoch
	}
	cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(claimKey), "=", epoch))
	resp, err := c.etcd.Txn(ctx).If(cmps...).Then(puts...).Else(clientv3.OpGet(claimKey)).Commit()
	if err != nil {
		return false, fmt.Errorf("commit offsets of %q: %w", group, err)
	}
	if !resp.Succeeded {
		holder := firstKV(resp, 0)
		switch {
		case claim != nil && (holder == nil || holder.CreateRevision != epoch):
			return false, claim.fenced(holder)
		case claim == nil && holder != nil:
			return false, fmt.Errorf("commit offsets of %q: %w: its coordinator is %s (claim at revision %d); commit "+
				"through it, or once the group is empty (its claim ends up to a minute after)",
				group, ErrGroupClaimed, claimHolder(holder), holder.CreateRevision)
		}
		return true, fmt.Errorf("commit offsets of %q: %w", group, ErrTopicChanged)
	}
	return false, nil
}

// FetchOffsets returns a group's committed offsets, for every partition it committed.
func (c *Client) FetchOffsets(ctx context.Context, group string) (map[Partition]GroupOffset, error) {
	if err := ValidateGroupName(group); err != nil {
		return nil, err
	}
	prefix := c.keys.GroupOffsets(group)
	resp, err := c.etcd.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("fetch offsets of %q: %w", group, err)
	}
	out := make(map[Partition]GroupOffset, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		topic, partition, ok := parsePartitionKey(strings.TrimPrefix(string(kv.Key), prefix))
		var o GroupOffset
		if !ok || json.Unmarshal(kv.Value, &o) != nil {
			return nil, fmt.Errorf("fetch offsets of %q: bad entry %s = %q", group, kv.Key, kv.Value)
		}
		out[Partition{topic, partition}] = o
	}
	return out, nil
}

// AllOffsets returns every group's committed offsets, read in one etcd range. Entries that
// do not decode are skipped: one bad key must not hide every group's lag.
func (c *Client) AllOffsets(ctx context.Context) (map[string]map[Partition]GroupOffset, error) {
	resp, err := c.etcd.Get(ctx, c.keys.Groups(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read group offsets: %w", err)
	}
	out := map[string]map[Partition]GroupOffset{}
	for _, kv := range resp.Kvs {
		g, p, ok := c.parseGroupOffsetKey(string(kv.Key))
		var o GroupOffset
		if !ok || json.Unmarshal(kv.Value, &o) != nil {
			continue
		}
		if out[g] == nil {
			out[g] = map[Partition]GroupOffset{}
		}
		out[g][p] = o
	}
	return out, nil
}

// parseGroupOffsetKey splits /root/groups/<escaped group>/offsets/<topic>/<partition>.
func (c *Client) parseGroupOffsetKey(key string) (string, Partition, bool) {
	escaped, tail, ok := strings.Cut(strings.TrimPrefix(key, c.keys.Groups()), groupOffsetsInfix)
	if !ok {
		return "", Partition{}, false
	}
	g, err := url.PathUnescape(escaped)
	topic, partition, pok := parsePartitionKey(tail)
	if err != nil || !pok {
		return "", Partition{}, false
	}
	return g, Partition{topic, partition}, true
}

// Groups lists the groups that have committed offsets, by name.
func (c *Client) Groups(ctx context.Context) ([]string, error) {
	resp, err := c.etcd.Get(ctx, c.keys.Groups(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, kv := range resp.Kvs {
		g, _, ok := c.parseGroupOffsetKey(string(kv.Key))
		if !ok || seen[g] {
			continue
		}
		seen[g] = true
		out = append(out, g)
	}
	sort.Strings(out)
	return out, nil
}
