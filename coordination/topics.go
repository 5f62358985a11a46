package coordination

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// CreateTopic stores spec, with defaults filled in, if no topic of that name exists. It is
// one transaction: of concurrent creates of one name exactly one succeeds.
func (c *Client) CreateTopic(ctx context.Context, spec TopicSpec) (TopicSpec, error) {
	spec.DeletedAt = nil
	spec, err := spec.withDefaults()
	if err != nil {
		return spec, err
	}
	spec.CreatedAt = c.now()
	key := c.keys.Topic(spec.Name)
	resp, err := c.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, mustJSON(spec))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return spec, fmt.Errorf("create topic %s: %w", spec.Name, err)
	}
	if !resp.Succeeded {
		return spec, nameTaken(spec.Name, firstKV(resp, 0))
	}
	spec.Incarnation = resp.Header.Revision // the put's: the key's create revision
	return spec, nil
}

// TopicNameFree returns nil if a topic of that name can be created now, else the error
// CreateTopic would return (ErrTopicExists, also for a deleted topic not purged yet), or
// the error of the read: a create validated only must be refused as the create would be.
func (c *Client) TopicNameFree(ctx context.Context, name string) error {
	if err := ValidateTopicName(name); err != nil {
		return err
	}
	resp, err := c.etcd.Get(ctx, c.keys.Topic(name))
	if err != nil {
		return fmt.Errorf("create topic %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	return nameTaken(name, resp.Kvs[0])
}

// nameTaken is the error of a create of name, whose key holds kv.
func nameTaken(name string, kv *mvccpb.KeyValue) error {
	var held TopicSpec
	if kv != nil && json.Unmarshal(kv.Value, &held) == nil && held.Deleted() {
		// The name is free only once the sweeper has purged the deleted topic's keys:
		// say so, rather than name a topic that lists and describes as missing.
		return fmt.Errorf("create topic %s: %w: it was deleted at %s and its data is not purged yet; "+
			"an agent purges it once its partitions have stopped, normally within seconds (unless every agent runs with --sweep-grace 0), and the name is free then",
			name, ErrTopicExists, held.DeletedAt.UTC().Format(time.RFC3339))
	}
	return fmt.Errorf("create topic %s: %w", name, ErrTopicExists)
}

// Topic returns a live (not deleted) topic.
func (c *Client) Topic(ctx context.Context, name string) (TopicSpec, error) {
	spec, _, err := c.topic(ctx, name)
	return spec, err
}

// topic also returns the key's ModRevision, for guards.
func (c *Client) topic(ctx context.Context, name string) (TopicSpec, int64, error) {
	var spec TopicSpec
	if err := ValidateTopicName(name); err != nil {
		return spec, 0, err
	}
	resp, err := c.etcd.Get(ctx, c.keys.Topic(name))
	if err != nil {
		return spec, 0, fmt.Errorf("get topic %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return spec, 0, fmt.Errorf("topic %s: %w", name, ErrTopicNotFound)
	}
	if spec, err = decodeTopic(name, resp.Kvs[0].Value); err != nil {
		return spec, 0, err
	}
	spec.Incarnation = resp.Kvs[0].CreateRevision
	if spec.Deleted() {
		return spec, 0, fmt.Errorf("topic %s: %w (deleted at %s)", name, ErrTopicNotFound, spec.DeletedAt.Format("2006-01-02T15:04:05Z"))
	}
	return spec, resp.Kvs[0].ModRevision, nil
}

// checkPartition returns the topic's spec and ModRevision if partition is one of its.
func (c *Client) checkPartition(ctx context.Context, topic string, partition int32) (TopicSpec, int64, error) {
	spec, rev, err := c.topic(ctx, topic)
	if err != nil {
		return spec, 0, err
	}
	if partition < 0 || partition >= spec.Partitions {
		return spec, 0, fmt.Errorf("%w: %s has partitions 0..%d, not %d", ErrPartitionNotFound, topic, spec.Partitions-1, partition)
	}
	return spec, rev, nil
}

// Topics lists live topics by name.
func (c *Client) Topics(ctx context.Context) ([]TopicSpec, error) {
	resp, err := c.etcd.Get(ctx, c.keys.Topics(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var out []TopicSpec
	for _, kv := range resp.Kvs {
		spec, err := decodeTopic(strings.TrimPrefix(string(kv.Key), c.keys.Topics()), kv.Value)
		if err != nil {
			c.log.Warn("topic skipped", zap.Error(err))
			continue
		}
		spec.Incarnation = kv.CreateRevision
		if !spec.Deleted() {
			out = append(out, spec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// TopicChanges are the settings AlterTopic changes; nil fields stay as they are. The
// partition count cannot change: records are placed by key hash over it.
type TopicChanges struct {
	RetentionMs    *int64
	RetentionBytes *int64
	LingerMs       *int64
	SegmentBytes   *int64
	MergeBytes     *int64
}

// AlterTopic applies changes to a live topic, validated as at creation (a zero value
// takes the default), in one transaction guarded on the topic not having changed since it
// was read. Partitions pick the new settings up from the watched topic within seconds.
func (c *Client) AlterTopic(ctx context.Context, name string, ch TopicChanges) (spec TopicSpec, err error) {
	err = retryTopicRace(ctx, func() (bool, error) {
		var again bool
		spec, again, err = c.alterTopicOnce(ctx, name, ch)
		return again, err
	})
	return spec, err
}

// alterTopicOnce is one attempt of AlterTopic; again when the topic changed meanwhile.
func (c *Client) alterTopicOnce(ctx context.Context, name string, ch TopicChanges) (TopicSpec, bool, error) {
	spec, rev, err := c.topic(ctx, name)
	if err != nil {
		return spec, false, err
	}
	for _, f := range []struct {
		to   *int64
		from *int64
	}{{&spec.RetentionMs, ch.RetentionMs}, {&spec.RetentionBytes, ch.RetentionBytes}, {&spec.LingerMs, ch.LingerMs},
		{&spec.SegmentBytes, ch.SegmentBytes}, {&spec.MergeBytes, ch.MergeBytes}} {
		if f.from != nil {
			*f.to = *f.from
		}
	}
	if spec, err = spec.withDefaults(); err != nil {
		return spec, false, err
	}
	key := c.keys.Topic(name)
	resp, err := c.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, mustJSON(spec))).
		Commit()
	if err != nil {
		return spec, false, fmt.Errorf("alter topic %s: %w", name, err)
	}
	if !resp.Succeeded {
		return spec, true, fmt.Errorf("alter topic %s: %w", name, ErrTopicChanged)
	}
	return spec, false, nil
}

// DeleteTopic marks a topic deleted. Its partitions stop accepting writes and its name
// stays taken until PurgeTopic (run by an agent once they have stopped:
// sweeper.Sweeper.PurgeOnStop) has removed its data and metadata.
func (c *Client) DeleteTopic(ctx context.Context, name string) error {
	return retryTopicRace(ctx, func() (bool, error) { return c.deleteTopicOnce(ctx, name) })
}

// deleteTopicOnce is one attempt of DeleteTopic; again when the topic changed meanwhile
// (altered: a delete of it, by someone else, is then ErrTopicNotFound).
func (c *Client) deleteTopicOnce(ctx context.Context, name string) (bool, error) {
	spec, rev, err := c.topic(ctx, name)
	if err != nil {
		return false, err
	}
	now := c.now()
	spec.DeletedAt = &now
	key := c.keys.Topic(name)
	resp, err := c.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, mustJSON(spec))).
		Commit()
	if err != nil {
		return false, fmt.Errorf("delete topic %s: %w", name, err)
	}
	if !resp.Succeeded {
		return true, fmt.Errorf("delete topic %s: %w", name, ErrTopicChanged)
	}
	return false, nil
}

// retryTopicRace runs attempt until it needs no other or ctx ends: a change guarded on a
// topic key that changed since it was read is read and tried again, so that an alter or
// a delete racing another alter, or an offset commit racing one, is not refused for it.
// Each failed guard is another change that succeeded, so the attempts end.
func retryTopicRace(ctx context.Context, attempt func() (again bool, err error)) error {
	for {
		again, err := attempt()
		if !again || ctx.Err() != nil {
			return err
		}
	}
}
