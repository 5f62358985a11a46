package kafka

import (
	"encoding/binary"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway"
)

// idempotentBatch is sampleRecords(n) as a batch of producer 9, epoch 1, from sequence seq.
func idempotentBatch(n int, seq int32) []byte {
	b := appendBatch(nil, sampleRecords(n))
	binary.BigEndian.PutUint64(b[43:], 9)           // producer id
	binary.BigEndian.PutUint16(b[51:], 1)           // producer epoch
	binary.BigEndian.PutUint32(b[53:], uint32(seq)) // first sequence
	return reCRC(b)
}

// TestWritesOfAPartition: a partition's batches become one write, or one per batch for an
// idempotent producer, and what cannot be written is refused before anything is sent.
func TestWritesOfAPartition(t *testing.T) {
	s := &Server{limits: gateway.Limits{MaxBatchRecords: 5}.WithDefaults()}
	p := coordination.Partition{Topic: "t", Partition: 0}
	plain := append(appendBatch(nil, sampleRecords(2)), appendBatch(nil, sampleRecords(3))...)
	writes, used, err := s.writesOf(p, plain, 1<<20)
	if err != nil || len(writes) != 1 || len(writes[0].Records) != 5 || writes[0].ProducerId != 0 || used == 0 {
		t.Fatalf("two plain batches: %v writes, %d bytes, %v", writes, used, err)
	}
	idem := append(idempotentBatch(2, 10), idempotentBatch(2, 12)...)
	writes, _, err = s.writesOf(p, idem, 1<<20)
	if err != nil || len(writes) != 2 || writes[1].ProducerId != 9 || writes[1].ProducerEpoch != 1 || writes[1].BaseSequence != 12 {
		t.Fatalf("two idempotent batches: %v, %v", writes, err)
	}
	for name, c := range map[string]struct {
		raw    []byte
		budget int
		code   int16
	}{
		"mixed":            {append(idempotentBatch(1, 0), appendBatch(nil, sampleRecords(1))...), 1 << 20, kerr.InvalidRecord.Code},
		"too many records": {append(plain, appendBatch(nil, sampleRecords(1))...), 1 << 20, kerr.MessageTooLarge.Code},
		"over the budget":  {plain, 10, kerr.MessageTooLarge.Code},
	} {
		if _, _, err := s.writesOf(p, c.raw, c.budget); err == nil || err.code != c.code {
			t.Errorf("%s: %v, want code %d", name, err, c.code)
		}
	}
}
