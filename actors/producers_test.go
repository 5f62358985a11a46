package actors

import (
	"math"
	"testing"

	"github.com/streamhouse/streamhouse/coordination"
)

// TestProducerSequences walks an idempotent producer through what a partition must
// recognise: the next batch, retries of committed and in-flight batches, gaps, fencing by
// a newer epoch, failed batches sent again, and the state a new owner loads.
func TestProducerSequences(t *testing.T) {
	ps := newProducers(nil)
	// verdict checks the verdict on a batch of producer id, named what.
	verdict := func(id int64, epoch int16, first int32, n int, follows bool, want seqVerdict, what string) {
		t.Helper()
		if got, _ := ps.check(id, epoch, first, n, follows); got != want {
			t.Fatalf("%s: verdict %d, want %d", what, got, want)
		}
	}
	expect := func(first int32, n int, want seqVerdict, wantBase int64) {
		t.Helper()
		got, base := ps.check(7, 0, first, n, false)
		if got != want || got == seqDuplicate && base != wantBase {
			t.Fatalf("batch %d+%d: verdict %d base %d, want %d base %d", first, n, got, base, want, wantBase)
		}
	}
	// A batch that follows one still on its way cannot start a producer: that one may
	// come after it.
	if v, _ := ps.check(7, 0, 10, 5, true); v != seqOutOfOrder {
		t.Fatalf("a following batch of an unknown producer: verdict %d, want out of order", v)
	}
	expect(0, 10, seqNext, 0) // a new producer starts anywhere
	ps.accept(7, 0, 0, 10, 100, 1)
	expect(0, 10, seqInFlight, 0) // a retry while it is written waits
	expect(10, 5, seqNext, 0)
	if v, _ := ps.check(7, 0, 10, 5, true); v != seqNext {
		t.Fatalf("a following batch of a known producer, in order: verdict %d", v)
	}
	ps.accept(7, 0, 10, 5, 110, 1)
	expect(20, 5, seqOutOfOrder, 0) // 15..19 missing
	ps.settle(7, 100, true)
	expect(0, 10, seqDuplicate, 100) // a committed batch: its offsets again, nothing written
	expect(5, 5, seqOlder, 0)        // within what is committed, not a batch remembered
	expect(5, 15, seqOutOfOrder, 0)  // from within what is committed to past it: 15..19 never written
	expect(12, 3, seqInFlight, 0)    // within a batch still being written
	ps.settle(7, 110, true)
	expect(12, 3, seqOlder, 0)

	// Batches failing (a writer reset): the producer's next batch is the first failed.
	ps.accept(7, 0, 15, 5, 115, 2)
	ps.accept(7, 0, 20, 5, 120, 2)
	ps.settle(7, 115, false)
	ps.settle(7, 120, false)
	expect(20, 5, seqOutOfOrder, 0)
	expect(15, 5, seqNext, 0)

	// A newer epoch fences the older one and starts anywhere, unless it follows a batch
	// still on its way.
	verdict(7, 1, 3, 3, true, seqOutOfOrder, "a following batch of a new epoch")
	verdict(7, 1, 0, 3, false, seqNext, "new epoch")
	ps.accept(7, 1, 0, 3, 130, 3)
	verdict(7, 0, 15, 5, false, seqFenced, "old epoch")

	// The state stored with a commit of [130, 132] and loaded by the next owner: the
	// last batch of each producer, with its offsets.
	snap := ps.changes(130, 132, ids(7), maxForget).Put
	if st := snap[7]; st.Epoch != 1 || st.FirstSeq != 0 || st.LastSeq != 2 || st.Base != 130 {
		t.Fatalf("snapshot: %+v", snap)
	}
	next := newProducers(snap)
	if v, base := next.check(7, 1, 0, 3, false); v != seqDuplicate || base != 130 {
		t.Fatalf("after a move: verdict %d base %d", v, base)
	}
	if v, _ := next.check(7, 1, 3, 1, false); v != seqNext {
		t.Fatalf("after a move, the next batch: verdict %d", v)
	}

	// A producer started here mid-sequence (its first batches sent concurrently, a later
	// one arrived first): an earlier batch is out of order, not a duplicate to ack, here
	// and at the next owner, which loads where the epoch started with the state. A state
	// stored before the start was kept does not say: older is older.
	ps.accept(11, 0, 10, 10, 300, 5)
	ps.settle(11, 300, true)
	if v, _ := ps.check(11, 0, 0, 10, false); v != seqOutOfOrder {
		t.Fatalf("a batch below where the producer started here: verdict %d, want out of order", v)
	}
	stored := ps.changes(300, 309, ids(11), maxForget).Put
	if v, _ := newProducers(stored).check(11, 0, 0, 10, false); v != seqOutOfOrder {
		t.Fatalf("after a move, a batch below where the producer started: verdict %d, want out of order", v)
	}
	if v, _ := newProducers(stored).check(11, 0, 12, 3, false); v != seqOlder {
		t.Fatalf("after a move, a batch within the last: verdict %d, want older", v)
	}
	old := stored[11]
	old.StartSeq = nil
	if v, _ := newProducers(coordination.ProducerStates{11: old}).check(11, 0, 0, 10, false); v != seqOlder {
		t.Fatalf("a batch below an old state's last: verdict %d, want older", v)
	}

	// The batch that started an epoch here failed, with the one after it: the epoch
	// starts anew, from the batch the client sends again first, here its first (an
	// older epoch is still fenced).
	ps.accept(12, 1, 10, 10, 400, 6)
	ps.accept(12, 1, 20, 10, 410, 6)
	ps.settle(12, 400, false)
	verdict(12, 1, 0, 10, false, seqOutOfOrder, "a batch below the epoch's failed start while a later batch is unsettled")
	ps.settle(12, 410, false)
	verdict(12, 0, 0, 10, false, seqFenced, "an older epoch after the epoch's batches failed")
	verdict(12, 1, 0, 10, true, seqOutOfOrder, "a following batch of an epoch that starts anew")
	verdict(12, 1, 0, 10, false, seqNext, "a batch below the epoch's failed start")
	ps.accept(12, 1, 0, 10, 400, 7)
	verdict(12, 1, 10, 10, false, seqNext, "the batch after the epoch's new start")

	// Sequence numbers wrap to 0 after the largest int32, as Kafka's do; below where the
	// epoch started then says nothing.
	ps.accept(9, 0, math.MaxInt32-1, 2, 200, 4)
	if v, _ := ps.check(9, 0, 0, 1, false); v != seqNext {
		t.Fatalf("after the wrap: verdict %d", v)
	}
	if st := ps.m[9]; st.start != -1 {
		t.Fatalf("start %d after the wrap, want unknown", st.start)
	}
}

// TestProducerStatesAreBounded keeps the producers that wrote last, forgetting the others
// a bounded number a commit, and never one with a batch being written.
func TestProducerStatesAreBounded(t *testing.T) {
	ps := newProducers(nil)
	const n = coordination.MaxProducerStates + maxForget + 10
	// Producer 1 wrote first, but its batch is still being written.
	ps.accept(1, 0, 0, 1, 0, 0)
	for i := int64(2); i <= n; i++ {
		ps.accept(i, 0, 0, 1, i, i)
		ps.settle(i, i, true)
	}
	// The commit of producer n's batch: it is put, and the oldest settled producers
	// (2, 3, ...) are forgotten, maxForget of them.
	ch := ps.changes(n, n, ids(n), maxForget)
	if len(ch.Put) != 1 || ch.Put[n].Base != n {
		t.Fatalf("put %+v, want producer %d's batch at %d", ch.Put, n, n)
	}
	if len(ch.Forget) != maxForget {
		t.Fatalf("%d producers forgotten in one commit, want %d", len(ch.Forget), maxForget)
	}
	for i, id := range ch.Forget {
		if id != int64(i)+2 {
			t.Fatalf("forgot %v, want the producers that wrote least recently, from 2", ch.Forget)
		}
	}
	// The next commit forgets the rest of the excess, and then nothing more.
	if ch := ps.changes(n, n, nil, maxForget); len(ch.Forget) != 10 || len(ps.m) != coordination.MaxProducerStates {
		t.Fatalf("second commit forgot %d, %d remembered", len(ch.Forget), len(ps.m))
	}
	if ch := ps.changes(n, n, nil, maxForget); len(ch.Forget) != 0 {
		t.Fatalf("within the bound, forgot %v", ch.Forget)
	}
	if _, ok := ps.m[1]; !ok {
		t.Fatal("the producer with a batch being written was forgotten")
	}
	if _, ok := ps.m[n]; !ok {
		t.Fatal("the producer that wrote last is not kept")
	}
}

// TestProducerStateKeepsTheWindowAcrossAMove: a new owner answers a retry of any of a
// producer's last producerWindow batches with its offsets, as the old owner did, not
// only a retry of the last one.
func TestProducerStateKeepsTheWindowAcrossAMove(t *testing.T) {
	ps := newProducers(nil)
	for i := range int64(producerWindow + 2) {
		ps.accept(7, 0, int32(i*10), 10, 100+i*10, i)
		if i < 3 {
			ps.settle(7, 100+i*10, true) // the first three in segments committed before
		}
	}
	// The rest in the segment being committed: the window holds the third batch (at
	// 120) and the four after it.
	ch := ps.changes(130, 169, ids(7), maxForget)
	if st := ch.Put[7]; st.Base != 160 || len(st.Earlier) != producerWindow-1 || st.Earlier[0].Base != 120 {
		t.Fatalf("stored %+v, want the batch at 160 and the %d before it from 120", st, producerWindow-1)
	}
	next := newProducers(ch.Put)
	for i := range int64(producerWindow) {
		first := int32(20 + i*10)
		if v, base := next.check(7, 0, first, 10, false); v != seqDuplicate || base != 120+i*10 {
			t.Fatalf("after a move, a retry of the batch from sequence %d: verdict %d base %d, want duplicate at %d", first, v, base, 120+i*10)
		}
	}
	if v, _ := next.check(7, 0, 10, 10, false); v != seqOlder {
		t.Fatalf("after a move, a batch older than the window: verdict %d, want older", v)
	}
	if v, _ := next.check(7, 0, 70, 10, false); v != seqNext {
		t.Fatalf("after a move, the next batch: verdict %d", v)
	}
}

// TestProducerWindowHoldsEveryBatchBeingWritten: a producer with producerWindow batches
// being written has its next refused until one is committed, so that none being written
// leaves the window (were it to fail, its retry would pass for committed).
func TestProducerWindowHoldsEveryBatchBeingWritten(t *testing.T) {
	ps := newProducers(nil)
	for i := range int64(producerWindow) {
		ps.accept(7, 0, int32(i*10), 10, i*10, i)
	}
	next := int32(producerWindow * 10)
	if v, _ := ps.check(7, 0, next, 10, false); v != seqWindowFull {
		t.Fatalf("a batch beyond %d being written: verdict %d, want window full", producerWindow, v)
	}
	ps.settle(7, 0, true)
	if v, _ := ps.check(7, 0, next, 10, false); v != seqNext {
		t.Fatalf("once the oldest is committed: verdict %d, want next", v)
	}
	// The batch taken pushes the committed one out; the ones being written stay, and a
	// failed one lowers the producer's next sequence to its own.
	ps.accept(7, 0, next, 10, 50, 6)
	ps.settle(7, 10, false)
	if v, _ := ps.check(7, 0, 10, 10, false); v != seqNext {
		t.Fatalf("the failed batch sent again: verdict %d, want next", v)
	}
}

// TestProducerChangesHoldOnlyTheSegmentsProducers: a commit writes the states of the
// producers with a batch in its segment, each at its newest batch there, not those of
// every producer the partition remembers.
func TestProducerChangesHoldOnlyTheSegmentsProducers(t *testing.T) {
	ps := newProducers(nil)
	ps.accept(1, 0, 0, 5, 0, 1)   // offsets 0-4
	ps.accept(2, 0, 0, 5, 5, 2)   // 5-9
	ps.accept(1, 0, 5, 5, 10, 3)  // 10-14
	ps.accept(1, 0, 10, 5, 15, 4) // 15-19, the next segment
	ch := ps.changes(0, 14, ids(1, 2), maxForget)
	if len(ch.Put) != 2 || ch.Put[1].Base != 10 || ch.Put[1].FirstSeq != 5 || ch.Put[2].Base != 5 || len(ch.Forget) != 0 {
		t.Fatalf("commit of [0, 14]: %+v", ch)
	}
	for _, b := range []int64{0, 5, 10} {
		ps.settle(1, b, true)
		ps.settle(2, b, true)
	}
	ps.accept(3, 0, 0, 1, 20, 5)
	if ch := ps.changes(15, 20, ids(1), maxForget); len(ch.Put) != 1 || ch.Put[1].Base != 15 {
		t.Fatalf("commit of [15, 20] with producer 1 only: %+v", ch)
	}
}

func ids(id ...int64) map[int64]struct{} {
	m := map[int64]struct{}{}
	for _, i := range id {
		m[i] = struct{}{}
	}
	return m
}

// maxForget is what a commit may forget with etcd's default --max-txn-ops.
const maxForget = (coordination.DefaultMaxTxnOps - 2) / 2
