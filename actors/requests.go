package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
)

// How long, and how many, written requests a partition remembers for re-sends. A client
// re-sends a request within its RetryFor (10 s by default) of the first attempt, so at
// most that long after the attempt commits; the bound on the number caps the memory of
// a partition taking thousands of requests a second (an id, offsets and a time each).
const (
	requestMemory             = 15 * time.Second
	maxRememberedPerPartition = 4096
)

// requestLog makes a partition write a produce request once however often its sender
// re-sends it (partitionpb.ProduceRequest.request_id). A client re-sends a request whose
// attempt got no answer in time, but that attempt may be waiting for a slow store and
// commit later: without the log the re-send would write the records a second time, or be
// refused by a full budget while the first attempt commits ("refused" for records that
// are written). A re-send of a request being written waits for its outcome; a re-send of
// a written one gets the offsets it was written at. Only written requests are
// remembered: a request that failed wrote nothing, and its re-send is a new attempt.
//
// The log lives with the partition's activation and only the actor's goroutine uses it.
// A re-send that reaches a new owner after a move finds it empty: for a request whose
// answer was lost with its owner, only an idempotent producer is exactly-once.
type requestLog struct {
	// pending maps a request being written to the senders of its re-sends.
	pending map[uint64][]*actor.PID
	done    map[uint64]writtenRequest
	order   []uint64 // done's keys from order[head], oldest first
	head    int
	now     func() time.Time
}

// writtenRequest is where a remembered request's records were written, and when.
type writtenRequest struct {
	base  int64
	count int32
	at    time.Time
}

func newRequestLog(now func() time.Time) *requestLog {
	return &requestLog{pending: map[uint64][]*actor.PID{}, done: map[uint64]writtenRequest{}, now: now}
}

// resent says whether request id is a re-send of a request this partition is writing or
// has written. Of one being written, sender then waits for its outcome (from settle); of
// a written one, written says where its records are.
func (l *requestLog) resent(id uint64, sender *actor.PID) (written *writtenRequest, ok bool) {
	if waiting, ok := l.pending[id]; ok {
		l.pending[id] = append(waiting, sender)
		return nil, true
	}
	if w, ok := l.done[id]; ok {
		return &w, true
	}
	return nil, false
}

// begin registers request id as being written.
func (l *requestLog) begin(id uint64) { l.pending[id] = nil }

// settle records the outcome of request id and returns the senders of its re-sends,
// which get the same answer.
func (l *requestLog) settle(id uint64, resp *partitionpb.ProduceResponse) []*actor.PID {
	waiting := l.pending[id]
	delete(l.pending, id)
	if resp.Code == partitionpb.Code_CODE_OK {
		l.remember(id, resp.BaseOffset, resp.Count)
	}
	return waiting
}

func (l *requestLog) remember(id uint64, base int64, count int32) {
	now := l.now()
	for l.head < len(l.order) {
		oldest := l.order[l.head]
		if len(l.order)-l.head < maxRememberedPerPartition && now.Sub(l.done[oldest].at) <= requestMemory {
			break
		}
		delete(l.done, oldest)
		l.head++
	}
	if l.head > len(l.order)/2 { // compact, amortised over the entries dropped
		l.order = append(l.order[:0], l.order[l.head:]...)
		l.head = 0
	}
	l.done[id] = writtenRequest{base: base, count: count, at: now}
	l.order = append(l.order, id)
}
