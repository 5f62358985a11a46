package coordination

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ProducerState is what a partition remembers of one idempotent producer: its epoch, the
// last batch it wrote and the ones before it that a client may still retry (Kafka's
// producer state: its last 5 batches, as many as it may have in flight). A retry of an
// older batch is answered "duplicate" without its offsets.
type ProducerState struct {
	Epoch     int16 `json:"epoch"`
	FirstSeq  int32 `json:"first_seq"`
	LastSeq   int32 `json:"last_seq"`
	Base      int64 `json:"base"`
	WrittenMs int64 `json:"written_ms"`
	// Earlier are the batches before the last, oldest first (absent from states written
	// before 2026-12-05).
	Earlier []ProducerBatch `json:"earlier,omitempty"`
	// StartSeq is the first sequence number of the epoch's first batch written to the
	// partition: a retry from below it is of a batch never written, not a duplicate (nil
	// in states written before 2026-12-07: unknown).
	StartSeq *int32 `json:"start_seq,omitempty"`
}

// ProducerBatch is one batch of an idempotent producer: its sequence numbers and the
// offset of its first record.
type ProducerBatch struct {
	FirstSeq int32 `json:"first_seq"`
	LastSeq  int32 `json:"last_seq"`
	Base     int64 `json:"base"`
}

// ProducerStates are a partition's idempotent producers by producer id (JSON object keys
// are the ids in decimal).
type ProducerStates map[int64]ProducerState

// MaxProducerStates bounds the producers a partition remembers; the ones that wrote
// least recently are forgotten first (a retry from one of those is taken as new).
const MaxProducerStates = 1000

// ProducerChanges is what one commit writes of a partition's producer states: the state
// of each producer with a batch in the segment, and the producers the partition forgets.
type ProducerChanges struct {
	Put    ProducerStates
	Forget []int64
}

// MaxProducerChanges bounds the states one commit puts, and apart from those the ones it
// forgets: with the segment's key and the high-water mark a commit is then at most
// Options.MaxTxnOps operations (63 each with etcd's default of 128). A partition seals a
// segment once it holds batches of this many idempotent producers.
func (c *Client) MaxProducerChanges() int { return (c.opts.MaxTxnOps - 2) / 2 }

// MaxProducerChanges is the lease's client's (Client.MaxProducerChanges).
func (l *Lease) MaxProducerChanges() int { return l.s.c.MaxProducerChanges() }

// ops are the etcd operations of c on partition p's keys, at most max puts and max
// deletes.
func (c ProducerChanges) ops(k Keys, p Partition, max int) ([]clientv3.Op, error) {
	if len(c.Put) > max || len(c.Forget) > max {
		return nil, invalidf("%d producer states put and %d forgotten in one commit (at most %d each)",
			len(c.Put), len(c.Forget), max)
	}
	ops := make([]clientv3.Op, 0, len(c.Put)+len(c.Forget))
	for id, st := range c.Put {
		ops = append(ops, clientv3.OpPut(k.ProducerState(p.Topic, p.Partition, id), mustJSON(st)))
	}
	forgotten := make(map[int64]bool, len(c.Forget))
	for _, id := range c.Forget {
		// etcd refuses a transaction that names a key twice.
		if _, ok := c.Put[id]; ok || forgotten[id] {
			return nil, invalidf("producer %d named twice in one commit", id)
		}
		forgotten[id] = true
		ops = append(ops, clientv3.OpDelete(k.ProducerState(p.Topic, p.Partition, id)))
	}
	return ops, nil
}

// NewProducerID returns a producer id no other call returns, in this cluster: the etcd
// revision of a write to one key (ids only grow).
func (c *Client) NewProducerID(ctx context.Context) (int64, error) {
	resp, err := c.etcd.Put(ctx, c.keys.ProducerIDs(), "")
	if err != nil {
		return 0, fmt.Errorf("new producer id: %w", err)
	}
	return resp.Header.Revision, nil
}

// Producers reads the partition's idempotent producer states as last committed. States
// kept the old way, in one key for the partition, are moved to a key each first (in
// transactions fenced on the lease; a move cut short is finished by the next owner).
func (l *Lease) Producers(ctx context.Context) (ProducerStates, error) {
	keys := l.s.c.keys
	prefix := keys.ProducerStates(l.p.Topic, l.p.Partition)
	legacyKey := keys.legacyProducerStates(l.p.Topic, l.p.Partition)
	resp, err := l.s.c.etcd.Txn(ctx).Then(clientv3.OpGet(prefix, clientv3.WithPrefix()), clientv3.OpGet(legacyKey)).Commit()
	if err != nil {
		return nil, fmt.Errorf("producer states of %s: %w", l.p, err)
	}
	// A state that does not decode (written by hand, or by a version that wrote another
	// shape) is skipped and logged rather than failing the read: it would keep the
	// partition from starting on every agent, for good. Its producer is then one the
	// partition does not know, as after its state expired: its next batch is taken at
	// the sequence it carries, so a retry of a batch in doubt may be written twice (the
	// state's next commit replaces the key).
	skip := func(key []byte, err error) {
		l.log.Warn("producer state skipped: it does not decode", zap.ByteString("key", key), zap.Error(err))
	}
	out := ProducerStates{}
	for _, kv := range resp.Responses[0].GetResponseRange().GetKvs() {
		id, err := strconv.ParseInt(strings.TrimPrefix(string(kv.Key), prefix), 10, 64)
		if err != nil {
			skip(kv.Key, fmt.Errorf("the key does not end with a producer id: %w", err))
			continue
		}
		var st ProducerState
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			skip(kv.Key, err)
			continue
		}
		out[id] = st
	}
	legacy := resp.Responses[1].GetResponseRange().GetKvs()
	if len(legacy) == 0 {
		return out, nil
	}
	var old ProducerStates
	if err := json.Unmarshal(legacy[0].Value, &old); err != nil {
		skip(legacy[0].Key, err)
		old = nil
	}
	moved := ProducerStates{}
	for id, st := range old {
		// Both describe committed batches: the one at the larger offset was committed
		// later (an agent of the old layout may have owned the partition since).
		if own, ok := out[id]; !ok || st.Base > own.Base {
			out[id], moved[id] = st, st
		}
	}
	if err := l.moveProducers(ctx, moved, legacyKey); err != nil {
		return nil, fmt.Errorf("producer states of %s: move from %s: %w", l.p, legacyKey, err)
	}
	return out, nil
}

// moveProducers writes states to a key each, then deletes legacyKey, in transactions of
// at most Options.MaxTxnOps operations fenced on the lease.
func (l *Lease) moveProducers(ctx context.Context, states ProducerStates, legacyKey string) error {
	var ops []clientv3.Op
	for id, st := range states {
		ops = append(ops, clientv3.OpPut(l.s.c.keys.ProducerState(l.p.Topic, l.p.Partition, id), mustJSON(st)))
	}
	ops = append(ops, clientv3.OpDelete(legacyKey))
	for len(ops) > 0 {
		n := min(len(ops), l.s.c.opts.MaxTxnOps)
		if err := l.fenced(ctx, ops[:n]...); err != nil {
			return err
		}
		ops = ops[n:]
	}
	return nil
}

// producerStatesOp deletes a partition's producer states (purge).
func (k Keys) producerStatesOp(topic string) clientv3.Op {
	return clientv3.OpDelete(k.Producers()+topic+"/", clientv3.WithPrefix())
}
