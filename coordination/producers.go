package coordination

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ProducerState is what a partition remembers of one idempotent producer: its epoch and
// the last batch it wrote (Kafka's producer state, for the last batch only: a retry of an
// older one is answered "duplicate" without its offsets).
type ProducerState struct {
	Epoch     int16 `json:"epoch"`
	FirstSeq  int32 `json:"first_seq"`
	LastSeq   int32 `json:"last_seq"`
	Base      int64 `json:"base"`
	WrittenMs int64 `json:"written_ms"`
}

// ProducerStates are a partition's idempotent producers by producer id (JSON object keys
// are the ids in decimal).
type ProducerStates map[int64]ProducerState

// MaxProducerStates bounds the producers a partition remembers; the ones that wrote
// least recently are forgotten first (a retry from one of those is taken as new).
const MaxProducerStates = 1000

// NewProducerID returns a producer id no other call returns, in this cluster: the etcd
// revision of a write to one key (ids only grow).
func (c *Client) NewProducerID(ctx context.Context) (int64, error) {
	resp, err := c.etcd.Put(ctx, c.keys.ProducerIDs(), "")
	if err != nil {
		return 0, fmt.Errorf("new producer id: %w", err)
	}
	return resp.Header.Revision, nil
}

// Producers reads the partition's idempotent producer states as last committed.
func (l *Lease) Producers(ctx context.Context) (ProducerStates, error) {
	key := l.s.c.keys.ProducerStates(l.p.Topic, l.p.Partition)
	resp, err := l.s.c.etcd.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("producer states of %s: %w", l.p, err)
	}
	out := ProducerStates{}
	if len(resp.Kvs) == 0 {
		return out, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &out); err != nil {
		return nil, fmt.Errorf("producer states of %s: decode %s: %w", l.p, key, err)
	}
	return out, nil
}

// producerStatesOp deletes a partition's producer states (purge).
func (k Keys) producerStatesOp(topic string) clientv3.Op {
	return clientv3.OpDelete(k.Producers()+topic+"/", clientv3.WithPrefix())
}
