package coordination_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/streamhouse/streamhouse/coordination"
)

// TestProducerStatesKeyPerProducer: a commit writes the states it names and deletes the
// ones it forgets, each under its own key; a new owner loads them all, and moves states
// kept the old way (one key for the partition) to a key each, a key of its own winning.
func TestProducerStatesKeyPerProducer(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 1)
	ctx := ctxT(t)
	keys := c.Keys()
	prefix := keys.ProducerStates("t", 0)
	legacyKey := strings.TrimSuffix(prefix, "/")

	// The old layout: 130 producers in one key (more than one transaction's worth to
	// move); producer 5 already with a newer state of its own, producer 6 with an older
	// one (an agent of the old layout owned the partition since).
	old := coordination.ProducerStates{}
	for id := int64(1); id <= 130; id++ {
		old[id] = coordination.ProducerState{FirstSeq: 0, LastSeq: 9, Base: id * 10, WrittenMs: id}
	}
	raw, _ := json.Marshal(old)
	newer := coordination.ProducerState{Epoch: 1, FirstSeq: 0, LastSeq: 4, Base: 5000, WrittenMs: 999}
	own, _ := json.Marshal(newer)
	stale, _ := json.Marshal(coordination.ProducerState{Base: 1})
	if _, err := c.Etcd().Txn(ctx).Then(clientv3.OpPut(legacyKey, string(raw)),
		clientv3.OpPut(keys.ProducerState("t", 0, 5), string(own)), clientv3.OpPut(keys.ProducerState("t", 0, 6), string(stale))).Commit(); err != nil {
		t.Fatal(err)
	}

	s := mustSession(t, c, "a", 0)
	l := mustAcquire(t, s, "t", 0)
	got, err := l.Producers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := coordination.ProducerStates{}
	for id, st := range old {
		want[id] = st
	}
	want[5] = newer
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("loaded %d states, want %d (producer 5: %+v, 6: %+v)", len(got), len(want), got[5], got[6])
	}
	after := dump(t, c)
	if _, ok := after[legacyKey]; ok {
		t.Fatal("the old key is still there after the move")
	}
	if n := countPrefix(t, c, prefix); n != 130 {
		t.Fatalf("%d keys under %s after the move, want 130", n, prefix)
	}
	// Loading again finds the same states, now from their own keys.
	if again, err := l.Producers(ctx); err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("second load: %v, equal %v", err, reflect.DeepEqual(again, want))
	}

	// A commit puts the states of its segment's producers and deletes the forgotten.
	st7 := coordination.ProducerState{FirstSeq: 10, LastSeq: 10, Base: 10, WrittenMs: 2000,
		Earlier: []coordination.ProducerBatch{{FirstSeq: 0, LastSeq: 4, Base: 0}, {FirstSeq: 5, LastSeq: 9, Base: 5}}}
	if _, err := l.CommitWithProducers(ctx, segment(0, 11, 0), coordination.ProducerChanges{
		Put: coordination.ProducerStates{7: st7}, Forget: []int64{8, 9}}); err != nil {
		t.Fatal(err)
	}
	want[7] = st7
	delete(want, 8)
	delete(want, 9)
	if got, err := l.Producers(ctx); err != nil || !reflect.DeepEqual(got, want) {
		_, kept := got[8]
		t.Fatalf("after a commit: %v; producer 7 %+v, 8 kept %v", err, got[7], kept)
	}

	// Changes beyond one transaction's bound, or naming a producer twice, are refused
	// before reaching etcd.
	before := dump(t, c)
	tooMany := coordination.ProducerStates{}
	for id := int64(1000); id <= 1000+int64(l.MaxProducerChanges()); id++ {
		tooMany[id] = st7
	}
	for _, ch := range []coordination.ProducerChanges{
		{Put: tooMany},
		{Forget: make([]int64, l.MaxProducerChanges()+1)},
		{Forget: []int64{3, 3}},
		{Put: coordination.ProducerStates{7: st7}, Forget: []int64{7}},
	} {
		if _, err := l.CommitWithProducers(ctx, segment(11, 1, 0), ch); !errors.Is(err, coordination.ErrInvalidArgument) {
			t.Errorf("commit of %d puts, %d forgets: %v, want ErrInvalidArgument", len(ch.Put), len(ch.Forget), err)
		}
	}
	if !reflect.DeepEqual(before, dump(t, c)) {
		t.Fatal("refused commits changed etcd")
	}
}

// TestAProducerStateThatDoesNotDecodeIsSkipped: a state in etcd that does not decode, or
// under a key that names no producer, is skipped, and the others load: before, the read
// failed, and with it the partition's start on every agent, for good.
func TestAProducerStateThatDoesNotDecodeIsSkipped(t *testing.T) {
	c := newClient(t)
	mustTopic(t, c, "t", 1)
	ctx := ctxT(t)
	keys := c.Keys()
	good := coordination.ProducerState{Epoch: 2, FirstSeq: 0, LastSeq: 4, Base: 40, WrittenMs: 7}
	raw, _ := json.Marshal(good)
	if _, err := c.Etcd().Txn(ctx).Then(clientv3.OpPut(keys.ProducerState("t", 0, 1), string(raw)),
		clientv3.OpPut(keys.ProducerState("t", 0, 2), "{not json"),
		clientv3.OpPut(keys.ProducerStates("t", 0)+"nobody", string(raw))).Commit(); err != nil {
		t.Fatal(err)
	}
	l := mustAcquire(t, mustSession(t, c, "a", 0), "t", 0)
	got, err := l.Producers(ctx)
	if err != nil || !reflect.DeepEqual(got, coordination.ProducerStates{1: good}) {
		t.Fatalf("states with two that do not decode: %+v, %v; want producer 1's alone", got, err)
	}
}

// TestMaxTxnOpsBoundsProducerChanges: a commit's producer changes fit the transaction
// limit the client is told, and a limit too small for any is refused.
func TestMaxTxnOpsBoundsProducerChanges(t *testing.T) {
	e := etcdClient(t, etcd.Endpoint)
	if _, err := coordination.New(e, coordination.Options{MaxTxnOps: 3}); !errors.Is(err, coordination.ErrInvalidArgument) {
		t.Fatalf("MaxTxnOps 3: %v, want ErrInvalidArgument", err)
	}
	if n := newClient(t).MaxProducerChanges(); n != 63 {
		t.Fatalf("with etcd's default of 128 operations: %d producer changes a commit, want 63", n)
	}
	c, err := coordination.New(e, coordination.Options{Root: "/test/max-txn-ops", MaxTxnOps: 8})
	if err != nil {
		t.Fatal(err)
	}
	if n := c.MaxProducerChanges(); n != 3 {
		t.Fatalf("with 8 operations: %d producer changes a commit, want 3", n)
	}
}
