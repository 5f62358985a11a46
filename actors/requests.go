package actors

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
)

// How long, and how many, written requests a partition remembers for re-sends. An agent
// re-sends a request within its RetryFor (10 s by default) of the first attempt, so at
// most that long after the attempt commits; a client that chose the request's id
// re-sends it after that agent's answer, and its own backoff. The bound on the number
// caps the memory of a partition taking thousands of requests a second (an id, offsets
// and a time each): past maxRememberedPerPartition, requests older than resendWindow go
// first, and past maxRecentRequests any (128 bytes each with the map's and the order's
// slack, measured with 65536 remembered: 8 MiB a partition at most, held until it stops).
const (
	requestMemory             = time.Minute
	maxRememberedPerPartition = 4096
	// resendWindow outlasts the agent's own re-sends (ClientOptions.RetryFor, 10 s),
	// whatever the number of requests after them: before, a partition taking more than
	// ~800 requests a second forgot a request before its agent's re-send came (5 s after
	// the attempt), and wrote it twice.
	resendWindow      = 15 * time.Second
	maxRecentRequests = 1 << 16
	// recentSegments is how many of a partition's last segments, at most, its new owner
	// reads the requests of (coordination.SegmentMeta.Requests), back to the first
	// written requestMemory ago: enough for the requests in doubt when its owner died,
	// a few seconds' worth at the hundred segments a second of a busy partition.
	recentSegments = 256
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
// A new owner fills it from the request ids each segment's index entry lists (restore),
// so that a re-send of a request whose answer was lost with its owner is answered too.
type requestLog struct {
	pending map[uint64]*pendingRequest
	done    map[uint64]writtenRequest
	order   []uint64 // done's keys from order[head], oldest first
	head    int
	// restored are the requests earlier owners wrote (restore): apart from done, so
	// that this owner's own requests do not push them out before requestMemory, when
	// their re-sends come.
	restored      map[uint64]writtenRequest
	restoredUntil time.Time // when the newest of them is forgotten
	now           func() time.Time
}

// pendingRequest is a request being written: its record count, and the senders of its
// re-sends.
type pendingRequest struct {
	count   int
	senders []*actor.PID
}

// writtenRequest is where a remembered request's records were written, and when.
type writtenRequest struct {
	base  int64
	count int32
	at    time.Time
}

func newRequestLog(now func() time.Time) *requestLog {
	return &requestLog{pending: map[uint64]*pendingRequest{}, done: map[uint64]writtenRequest{}, now: now}
}

// idMismatch is the error of a request whose id was given to a request of another count
// of records.
func idMismatch(id uint64, known, count int) error {
	return fmt.Errorf("%w: request id %d was given to %d records, this request has %d", ErrInvalidArgument, id, known, count)
}

// resent says whether request id, of count records, is a re-send of a request this
// partition is writing or has written. Of one being written, sender then waits for its
// outcome (from settle); of a written one, written says where its records are. An id
// known with another count of records is not a re-send: a client gave it to other
// records, and err says so (ErrInvalidArgument).
func (l *requestLog) resent(id uint64, count int, sender *actor.PID) (written *writtenRequest, ok bool, err error) {
	mismatch := func(known int) error { return idMismatch(id, known, count) }
	if p, ok := l.pending[id]; ok {
		if p.count != count {
			return nil, false, mismatch(p.count)
		}
		p.senders = append(p.senders, sender)
		return nil, true, nil
	}
	w, ok := l.done[id]
	if !ok && l.restored != nil {
		if w, ok = l.restored[id]; ok && l.now().Sub(w.at) > requestMemory {
			delete(l.restored, id)
			ok = false
		}
	}
	if !ok {
		return nil, false, nil
	}
	if int(w.count) != count {
		return nil, false, mismatch(int(w.count))
	}
	return &w, true, nil
}

// begin registers request id, of count records, as being written.
func (l *requestLog) begin(id uint64, count int) { l.pending[id] = &pendingRequest{count: count} }

// settle records the outcome of request id and returns the senders of its re-sends,
// which get the same answer.
func (l *requestLog) settle(id uint64, resp *partitionpb.ProduceResponse) []*actor.PID {
	p := l.pending[id]
	delete(l.pending, id)
	if resp.Code == partitionpb.Code_CODE_OK {
		l.remember(id, resp.BaseOffset, resp.Count)
	}
	if p == nil {
		return nil
	}
	return p.senders
}

// restore remembers the requests written in segs, oldest first, as of when they were
// written: the newest maxRememberedPerPartition of them written within requestMemory. It
// returns how many it remembered. A reference outside its segment's offsets is not one
// this package wrote, and is skipped.
//
// A segment's time is its writer's clock, which need not agree with this agent's: ages
// are taken from the last segment, as if written now (it was written before this owner
// took over), by whoever wrote it; one that looks younger than the last (an earlier
// writer's clock ran ahead) counts as written with it. Against this agent's clock, a
// writer's running 90 s behind had every request of its last segments forgotten, and
// their re-sends written again.
func (l *requestLog) restore(segs []coordination.SegmentMeta) int {
	if len(segs) == 0 {
		return 0
	}
	now, last := l.now(), segs[len(segs)-1].WrittenMs
	for i := len(segs) - 1; i >= 0; i-- {
		m := segs[i]
		at := now.Add(-time.Duration(max(0, last-m.WrittenMs)) * time.Millisecond)
		if now.Sub(at) > requestMemory {
			continue // clocks need not agree: one before it may look younger
		}
		for j := len(m.Requests) - 1; j >= 0 && len(l.restored) < maxRememberedPerPartition; j-- {
			r := m.Requests[j]
			if r.ID == 0 || r.Count < 1 || r.Base < m.Base || r.Base+int64(r.Count)-1 > m.Last {
				continue
			}
			if l.restored == nil {
				l.restored = map[uint64]writtenRequest{}
			}
			if _, newer := l.restored[r.ID]; !newer {
				l.restored[r.ID] = writtenRequest{base: r.Base, count: r.Count, at: at}
			}
			if until := at.Add(requestMemory); until.After(l.restoredUntil) {
				l.restoredUntil = until
			}
		}
	}
	return len(l.restored)
}

// remember records that request id's count records were written from base. It first
// forgets what is past requestMemory, past maxRememberedPerPartition and resendWindow,
// or past maxRecentRequests.
func (l *requestLog) remember(id uint64, base int64, count int32) {
	now := l.now()
	if l.restored != nil && now.After(l.restoredUntil) {
		l.restored = nil // every one of them forgotten
	}
	for l.head < len(l.order) {
		oldest, n := l.order[l.head], len(l.order)-l.head
		age := now.Sub(l.done[oldest].at)
		if n < maxRecentRequests && age <= requestMemory && (n < maxRememberedPerPartition || age <= resendWindow) {
			break
		}
		delete(l.done, oldest)
		l.head++
	}
	if l.head > len(l.order)/2 { // compact, amortised over the entries dropped
		l.order = append(l.order[:0], l.order[l.head:]...)
		l.head = 0
	}
	if _, known := l.done[id]; !known {
		l.order = append(l.order, id)
	}
	l.done[id] = writtenRequest{base: base, count: count, at: now}
}
