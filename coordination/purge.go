package coordination

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// purgePage is how many segment keys of a deleted topic one purge transaction removes.
const purgePage = 500

// DeletedTopics lists the topics marked deleted whose keys PurgeTopic has not removed yet.
func (c *Client) DeletedTopics(ctx context.Context) ([]TopicSpec, error) {
	var out []TopicSpec
	if _, err := c.scan(ctx, c.keys.Topics(), 0, func(kv *mvccpb.KeyValue) error {
		var spec TopicSpec
		if err := json.Unmarshal(kv.Value, &spec); err == nil && spec.Deleted() {
			out = append(out, spec)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list deleted topics: %w", err)
	}
	return out, nil
}

// PurgeTopic removes the keys of a deleted topic: its segment index (leaving a tombstone
// for the objects it named, which the orphan sweeper deletes after its grace), its
// high-water marks, the consumer-group offsets for it, and last its topic key, which frees
// the name. Each step is a transaction guarded on the topic key not having changed and on
// the partition having no owner, so a crash anywhere leaves what PurgeTopic resumes from;
// it is idempotent. While an owner still holds a partition (it stops when it sees the
// deletion) it returns ErrTopicBusy.
func (c *Client) PurgeTopic(ctx context.Context, name string) error {
	key := c.keys.Topic(name)
	resp, err := c.etcd.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("purge topic %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil // purged already
	}
	var spec TopicSpec
	if err := json.Unmarshal(resp.Kvs[0].Value, &spec); err != nil {
		return fmt.Errorf("purge topic %s: decode %s: %w", name, key, err)
	}
	if !spec.Deleted() {
		return invalidf("topic %s is not deleted", name)
	}
	rev := resp.Kvs[0].ModRevision
	unchanged := clientv3.Compare(clientv3.ModRevision(key), "=", rev)
	owners, err := c.etcd.Get(ctx, c.keys.TopicLeases(name), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("purge topic %s: %w", name, err)
	}
	if owners.Count > 0 {
		return fmt.Errorf("purge topic %s: %w: %d partitions still have an owner", name, ErrTopicBusy, owners.Count)
	}
	for p := range spec.Partitions {
		if err := c.purgeSegments(ctx, name, p, unchanged); err != nil {
			return err
		}
	}
	if err := c.guarded(ctx, []clientv3.Cmp{unchanged}, clientv3.OpDelete(c.keys.HWMs()+name+"/", clientv3.WithPrefix()),
		c.keys.producerStatesOp(name)); err != nil {
		return fmt.Errorf("purge topic %s: high-water marks and producer states: %w", name, err)
	}
	if err := c.purgeGroupOffsets(ctx, name, unchanged); err != nil {
		return err
	}
	if err := c.guarded(ctx, []clientv3.Cmp{unchanged}, clientv3.OpDelete(key)); err != nil {
		return fmt.Errorf("purge topic %s: %w", name, err)
	}
	return nil
}

// purgeSegments removes one partition's segment index, a page at a time, each page with a
// tombstone naming its objects.
func (c *Client) purgeSegments(ctx context.Context, topic string, p int32, unchanged clientv3.Cmp) error {
	prefix := c.keys.Segments(topic, p)
	for {
		resp, err := c.etcd.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithLimit(purgePage))
		if err != nil {
			return fmt.Errorf("purge %s/%d: %w", topic, p, err)
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		metas := make([]SegmentMeta, 0, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			m, err := decodeSegment(kv)
			if err != nil {
				return fmt.Errorf("purge %s/%d: %w", topic, p, err)
			}
			metas = append(metas, m)
		}
		metas = metas[:SegmentsWithinTombstone(metas)]
		t := Tombstone{Objects: ObjectsOf(metas), RemovedAt: c.now(), Reason: RemovedByDelete}
		first, last := resp.Kvs[0], resp.Kvs[len(metas)-1]
		base := strings.TrimPrefix(string(first.Key), prefix)
		noOwner := clientv3.Compare(clientv3.CreateRevision(c.keys.Lease(topic, p)), "=", 0)
		err = c.guarded(ctx, []clientv3.Cmp{unchanged, noOwner},
			clientv3.OpDelete(string(first.Key), clientv3.WithRange(string(last.Key)+"\x00")),
			clientv3.OpPut(c.keys.Tombstone(topic, p, "purge-"+base), mustJSON(t)))
		if err != nil {
			return fmt.Errorf("purge %s/%d: %w", topic, p, err)
		}
		CrashPoint("purge-page")
	}
}

// purgeGroupOffsets deletes every group's committed offsets for topic.
func (c *Client) purgeGroupOffsets(ctx context.Context, topic string, unchanged clientv3.Cmp) error {
	var keys []string
	if _, err := c.scan(ctx, c.keys.Groups(), 0, func(kv *mvccpb.KeyValue) error {
		k := string(kv.Key)
		if i := strings.Index(k, groupOffsetsInfix); i >= 0 {
			if t, _, ok := parsePartitionKey(k[i+len(groupOffsetsInfix):]); ok && t == topic {
				keys = append(keys, k)
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("purge %s: group offsets: %w", topic, err)
	}
	for len(keys) > 0 {
		n := min(len(keys), c.opts.MaxTxnOps-1)
		ops := make([]clientv3.Op, 0, n)
		for _, k := range keys[:n] {
			ops = append(ops, clientv3.OpDelete(k))
		}
		if err := c.guarded(ctx, []clientv3.Cmp{unchanged}, ops...); err != nil {
			return fmt.Errorf("purge %s: group offsets: %w", topic, err)
		}
		keys = keys[n:]
	}
	return nil
}

// guarded runs ops if cmps hold; a failed guard means the topic changed under the purge,
// or a partition got an owner.
func (c *Client) guarded(ctx context.Context, cmps []clientv3.Cmp, ops ...clientv3.Op) error {
	resp, err := c.etcd.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: the topic key changed during the purge", ErrTopicBusy)
	}
	return nil
}
