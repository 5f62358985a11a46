package actors

import (
	"math"
	"sort"

	"github.com/streamhouse/streamhouse/coordination"
)

// producerWindow is how many batches of each idempotent producer a partition remembers
// with their offsets: Kafka's limit on an idempotent producer's in-flight requests, so a
// retry of any batch still in flight is recognised.
const producerWindow = 5

// seqVerdict is what a partition makes of an idempotent batch's sequence numbers.
type seqVerdict int

const (
	seqNext       seqVerdict = iota // the next batch: write it
	seqDuplicate                    // a retry of a committed batch: answer its offsets
	seqOlder                        // a retry of a committed batch no longer remembered
	seqInFlight                     // a retry of a batch still being written: retry later
	seqOutOfOrder                   // a gap: earlier batches are missing
	seqFenced                       // an older epoch of the producer
	seqWindowFull                   // the next batch, with producerWindow being written: retry later
)

// producerBatch is one idempotent batch the writer accepted.
type producerBatch struct {
	first, last int32
	base        int64
	committed   bool
}

type producerState struct {
	epoch     int16
	batches   []producerBatch // oldest first, at most producerWindow
	next      int32           // the first sequence number of the producer's next batch
	writtenMs int64
	// start is the first sequence number of the epoch's first batch written to this
	// partition (-1: unknown, loaded from a state stored before it was kept, or the
	// sequence numbers wrapped since). A batch below it was never written here: it is
	// out of order, not a duplicate.
	start int32
	// unstarted: the epoch's first batch failed (and the ones after it with it), none
	// was committed; once they are all settled, the epoch's next batch starts it anew, at
	// any sequence number (its first batches sent concurrently, the one that failed may
	// not have been its first).
	unstarted bool
}

// producers tracks a partition's idempotent producers: the committed state loaded at
// acquisition, and the batches accepted since. Only the writer's goroutine uses it.
type producers struct {
	m map[int64]*producerState
}

func newProducers(states coordination.ProducerStates) *producers {
	ps := &producers{m: map[int64]*producerState{}}
	for id, st := range states {
		batches := make([]producerBatch, 0, len(st.Earlier)+1)
		for _, b := range st.Earlier[max(len(st.Earlier)-(producerWindow-1), 0):] {
			batches = append(batches, producerBatch{first: b.FirstSeq, last: b.LastSeq, base: b.Base, committed: true})
		}
		batches = append(batches, producerBatch{first: st.FirstSeq, last: st.LastSeq, base: st.Base, committed: true})
		start := int32(-1)
		if st.StartSeq != nil {
			start = *st.StartSeq
		}
		ps.m[id] = &producerState{epoch: st.Epoch, writtenMs: st.WrittenMs, next: nextSeq(st.LastSeq), start: start, batches: batches}
	}
	return ps
}

// nextSeq is the sequence number after s: Kafka's wrap to 0 after the largest int32.
func nextSeq(s int32) int32 {
	if s == math.MaxInt32 {
		return 0
	}
	return s + 1
}

// lastSeq is the sequence number of the last of n records from first.
func lastSeq(first int32, n int) int32 {
	return int32((int64(first) + int64(n) - 1) % (math.MaxInt32 + 1))
}

// check judges a batch of n records from first sequence number; for a duplicate it also
// returns the base offset it was written at. A batch that follows another of its producer
// still on its way (follows) cannot start a producer or an epoch: it waits for that one.
func (ps *producers) check(id int64, epoch int16, first int32, n int, follows bool) (seqVerdict, int64) {
	st := ps.m[id]
	switch {
	case st != nil && epoch < st.epoch:
		return seqFenced, 0
	case (st == nil || epoch > st.epoch || st.restarts()) && follows:
		return seqOutOfOrder, 0
	case st == nil || epoch > st.epoch || st.restarts():
		return seqNext, 0 // a new producer, or a new epoch of one: any sequence starts it
	}
	last := lastSeq(first, n)
	for _, b := range st.batches {
		if b.first == first && b.last == last {
			if b.committed {
				return seqDuplicate, b.base
			}
			return seqInFlight, 0
		}
	}
	switch {
	case first == st.next && len(st.batches) == producerWindow && !st.batches[0].committed:
		// Taking it would push a batch being written out of the window: were that one to
		// fail, its retry would look committed (Kafka clients keep at most 5 in flight).
		return seqWindowFull, 0
	case first == st.next:
		return seqNext, 0
	case first < st.start && st.start <= st.next:
		// Below where this partition started the epoch (and no wrap since): a batch the
		// producer sent before that one, which never arrived. A client may have sent
		// its first batches concurrently and the first to arrive started the producer;
		// calling this one a duplicate would ack records never written.
		return seqOutOfOrder, 0
	case first < st.next && int64(first)+int64(n) > int64(st.next):
		// From below next to past it (a client that cut its batches anew): its records
		// from next on were never written, so it is no duplicate to ack (Kafka: out of
		// order).
		return seqOutOfOrder, 0
	case first < st.next:
		// Every sequence number below next was written or is being written (a failed
		// batch lowers next to its own first). Batches commit in order, so this one is
		// committed unless an uncommitted batch starts at or before it.
		for _, b := range st.batches {
			if !b.committed && b.first <= first {
				return seqInFlight, 0
			}
		}
		return seqOlder, 0
	}
	return seqOutOfOrder, 0
}

// restarts reports whether the epoch's next batch starts it anew: its batches all failed
// and were settled.
func (st *producerState) restarts() bool { return st.unstarted && len(st.batches) == 0 }

// accept records a batch the writer took at base.
func (ps *producers) accept(id int64, epoch int16, first int32, n int, base, nowMs int64) {
	st := ps.m[id]
	// An epoch whose first batch failed starts anew here, even with batches after that one
	// still to settle: they fail with it (settle finds them gone and changes nothing).
	if st == nil || epoch > st.epoch || st.unstarted {
		st = &producerState{epoch: epoch, start: first}
		ps.m[id] = st
	}
	st.writtenMs = nowMs
	st.batches = append(st.batches, producerBatch{first: first, last: lastSeq(first, n), base: base})
	st.next = nextSeq(lastSeq(first, n))
	if st.next <= first {
		st.start = -1 // wrapped: below start no longer means before it
	}
	if len(st.batches) > producerWindow {
		st.batches = st.batches[len(st.batches)-producerWindow:]
	}
}

// settle marks the batch at base committed, or forgets it when it failed: its sequence
// numbers are expected again (a writer fails its batches oldest first, and every batch
// after a failed one fails too, so the producer's next batch is the first that failed).
func (ps *producers) settle(id, base int64, committed bool) {
	st := ps.m[id]
	if st == nil {
		return
	}
	for i, b := range st.batches {
		if b.base != base {
			continue
		}
		if committed {
			st.batches[i].committed = true
		} else {
			st.next = min(st.next, b.first)
			st.batches = append(st.batches[:i], st.batches[i+1:]...)
			// The epoch's first batch failed (batches commit in order: none of the
			// epoch is), and the ones after it fail with it.
			st.unstarted = st.unstarted || b.first == st.start && i == 0
		}
		return
	}
}

// changes is what the commit of offsets [base, last], holding batches of the producers
// ids, writes of the producer states: each one's newest batch in that range with those
// before it in its window, and the
// producers to forget so that the partition remembers at most MaxProducerStates: those
// that wrote least recently, among the ones with no batch being written (at most
// maxForget a commit, the lease's MaxProducerChanges; any more wait for the next
// commits).
func (ps *producers) changes(base, last int64, ids map[int64]struct{}, maxForget int) coordination.ProducerChanges {
	put := make(coordination.ProducerStates, len(ids))
	for id := range ids {
		st := ps.m[id]
		if st == nil {
			continue
		}
		for i := len(st.batches) - 1; i >= 0; i-- {
			if b := st.batches[i]; b.base >= base && b.base <= last {
				// The batches before it are committed by now (or by this commit): batches
				// commit in order, and a failed one is forgotten.
				state := coordination.ProducerState{Epoch: st.epoch, FirstSeq: b.first, LastSeq: b.last, Base: b.base, WrittenMs: st.writtenMs}
				if start := st.start; start >= 0 {
					state.StartSeq = &start
				}
				for _, e := range st.batches[:i] {
					state.Earlier = append(state.Earlier, coordination.ProducerBatch{FirstSeq: e.first, LastSeq: e.last, Base: e.base})
				}
				put[id] = state
				break
			}
		}
	}
	ch := coordination.ProducerChanges{Put: put}
	excess := len(ps.m) - coordination.MaxProducerStates
	if excess <= 0 {
		return ch
	}
	type idle struct {
		id        int64
		writtenMs int64
	}
	var quiet []idle
	for id, st := range ps.m {
		if _, ok := put[id]; !ok && st.settled() {
			quiet = append(quiet, idle{id, st.writtenMs})
		}
	}
	sort.Slice(quiet, func(i, j int) bool { return quiet[i].writtenMs < quiet[j].writtenMs })
	for _, q := range quiet[:min(excess, len(quiet), maxForget)] {
		delete(ps.m, q.id)
		ch.Forget = append(ch.Forget, q.id)
	}
	return ch
}

// settled says that none of the producer's batches is being written.
func (st *producerState) settled() bool {
	for _, b := range st.batches {
		if !b.committed {
			return false
		}
	}
	return true
}
