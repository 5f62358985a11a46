package kafka

import (
	"context"
	"math"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/actors"
	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
)

const (
	// maxFetchWait bounds a fetch's long-poll whatever the client asks.
	maxFetchWait = 30 * time.Second
	// firstReadWait bounds the wait for a fetch's first reads when its max wait is
	// shorter: an attempt's timeout at a partition's owner, and as long as a read from
	// the store waits for room there. A read that takes longer (the partition failing
	// over) is left, and its partition answered with no records; a shorter bound would
	// leave slow reads from the store, which their client would ask for again at once.
	firstReadWait = 5 * time.Second
	// pollRound bounds one long-poll of a partition: a fetch of many idle partitions
	// answers when the first of them gets records, and the others' polls, abandoned, end
	// within this.
	pollRound = time.Second
	// minFetchShare is the least a partition of a fetch may read, whatever the number of
	// partitions sharing --max-fetch-bytes.
	minFetchShare = 64 << 10
)

// fetchPart is one partition of a fetch request and, as it is read, its answer.
type fetchPart struct {
	p coordination.Partition
	// incarnation is the topic's the fetch looked up: every round reads that one
	// (partitionpb.FetchRequest.topic_incarnation).
	incarnation int64
	offset      int64 // the next offset to read
	maxBytes    int32
	out         *kmsg.FetchResponseTopicPartition
	records     []*partitionpb.Record
	bytes       int
	done        bool // answered with an error, or read up to its max bytes
	reading     bool // a read of it is on its way (fetchReads)
	refused     bool // its owner had no room to read it now (answered empty)
}

// fetch reads every partition asked for, concurrently. A fetch that finds fewer than
// min bytes waits up to max wait for more, answering as soon as any partition has
// records, or has an error to tell (answerNow). Fetch sessions are not kept (session id 0): clients send full requests.
func (s *Server) fetch(ctx context.Context, req *request, r *kmsg.FetchRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.FetchResponse)
	if r.MaxWaitMillis > 0 {
		// It may wait, for the read budget or for records: a client that hangs up ends
		// those waits (reads its partitions started from the store run on).
		defer req.watch()()
	}
	deadline := time.Now().Add(min(time.Duration(max(r.MaxWaitMillis, 0))*time.Millisecond, maxFetchWait))
	zone := r.Rack
	if zone == "" {
		zone = zoneOf(req.clientID)
	}
	var redirect []broker
	if zone != "" && zone != s.opts.Self.Zone {
		if in := inZone(s.brokers(), zone); len(in) > 0 && in[0].zone == zone {
			redirect = in // the client's zone has agents: send it to them (KIP-392)
		}
	}
	var parts []*fetchPart
	for _, t := range r.Topics {
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic = t.Topic
		rt.Partitions = make([]kmsg.FetchResponseTopicPartition, len(t.Partitions))
		spec, specErr := s.liveTopic(ctx, t.Topic)
		for i, p := range t.Partitions {
			out := &rt.Partitions[i]
			*out = kmsg.NewFetchResponseTopicPartition()
			out.Partition, out.HighWatermark, out.LastStableOffset, out.LogStartOffset = p.Partition, -1, -1, -1
			out.RecordBatches = []byte{} // empty, not null: some clients read null as a corrupt size
			switch {
			case specErr != nil:
				out.ErrorCode = codeOf(specErr)
				continue
			case p.Partition < 0 || p.Partition >= spec.Partitions:
				out.ErrorCode = errUnknownTopicOrPartition
				continue
			case p.FetchOffset < 0:
				out.ErrorCode = kerr.OffsetOutOfRange.Code
				continue
			}
			part := coordination.Partition{Topic: t.Topic, Partition: p.Partition}
			if redirect != nil && r.Version >= 11 {
				out.PreferredReadReplica = s.leaderFor(part, redirect).id
				continue
			}
			parts = append(parts, &fetchPart{p: part, incarnation: spec.Incarnation, offset: p.FetchOffset, out: out, maxBytes: max(p.PartitionMaxBytes, 1)})
		}
		resp.Topics = append(resp.Topics, rt)
	}
	// Partitions are read at once, so the agent's --max-fetch-bytes is shared among them:
	// what one fetch holds stays within it, however many partitions it names.
	parts = s.within(parts, r.MaxBytes)
	if len(parts) > 0 {
		share := int32(max(s.limits.MaxFetchBytes/len(parts), minFetchShare))
		for _, fp := range parts {
			fp.maxBytes = min(fp.maxBytes, share)
		}
	}
	c, ok := s.client()
	if !ok {
		for _, fp := range parts {
			fp.out.ErrorCode = kerr.NotLeaderForPartition.Code
		}
		return resp
	}
	// The first reads may decode segments the block cache does not keep: until the
	// answer is written, the fetch holds what its partitions may return in the agent's
	// read budget (the writer gives it back: request.hold).
	reserve := int64(0)
	for _, fp := range parts {
		reserve += int64(fp.maxBytes)
	}
	if reserve > 0 {
		// Waiting no longer than the fetch's max wait: the client's request timeout
		// counts from it.
		rctx, cancel := context.WithDeadline(ctx, deadline)
		hold, err := s.opts.Reads.Reserve(rctx, reserve)
		cancel()
		if err != nil {
			// Spent by answers their clients have not taken: this client backs off
			// (KIP-219) and asks again. As a broker's throttled answer, it names no
			// partition, so that none reads as read with nothing in it.
			resp.ThrottleMillis = int32(pollRound.Milliseconds())
			resp.Topics = nil
			return resp
		}
		req.hold = hold
	}
	// A first read that does not wait; then, while that is less than min bytes, reads
	// that wait at the log end, until the deadline.
	reads := newFetchReads(c, parts)
	// A partition that cannot be read now (its owner failing over) does not hold the
	// others' answer past the max wait, or firstReadWait if that is shorter, as a broker
	// answers each partition on its own: it is answered with no records.
	total := s.round(ctx, reads, parts, 0, later(deadline, time.Now().Add(firstReadWait)))
	if total < int(r.MinBytes) && !answerNow(resp, parts) && ctx.Err() == nil && time.Until(deadline) > 0 {
		// The long polls hold none of the budget while they wait; what they wake to was
		// committed a moment ago and is held by the recent buffer, and is accounted from
		// here without waiting (as gRPC's fetch does).
		req.hold.Resize(int64(total))
		for total < int(r.MinBytes) && !answerNow(resp, parts) && ctx.Err() == nil {
			wait := time.Until(deadline)
			if wait <= 0 {
				break
			}
			total += s.round(ctx, reads, parts, min(wait, pollRound), deadline)
		}
		req.hold.Resize(int64(total))
	}
	for _, fp := range parts {
		if fp.reading && fp.out.HighWatermark < 0 {
			s.unread(fp) // no read of it came back
		}
	}
	if refusedOnly(parts) {
		// Answered at once with nothing (every partition read was refused room): the
		// client backs off (KIP-219) rather than fetch again at once.
		resp.ThrottleMillis = int32(pollRound.Milliseconds())
	}
	s.trim(parts, int(r.MaxBytes))
	for _, fp := range parts {
		if len(fp.records) > 0 {
			fp.out.RecordBatches = appendBatch(nil, fp.records)
		}
	}
	return resp
}

// within returns the partitions of a fetch to read now: each once (a partition named
// again is answered empty), and no more than minFetchShare each fits in
// --max-fetch-bytes, or in the request's max bytes if less: thousands of partitions at
// minFetchShare each would hold many times the agent's read budget. Which ones rotates
// from a random start, so that a client asking for more is answered each in turn; the
// others are answered with no records and their high-water mark as the agent mirrors
// it, as a broker answers the partitions past its response's size.
func (s *Server) within(parts []*fetchPart, maxBytes int32) []*fetchPart {
	limit := s.limits.MaxFetchBytes
	if maxBytes > 0 {
		limit = min(limit, int(maxBytes))
	}
	fits := max(limit/minFetchShare, 1)
	unread := s.unread
	seen := make(map[coordination.Partition]bool, len(parts))
	unique := parts[:0:0]
	for _, fp := range parts {
		if seen[fp.p] {
			unread(fp)
			continue
		}
		seen[fp.p] = true
		unique = append(unique, fp)
	}
	if len(unique) <= fits {
		return unique
	}
	start := rand.IntN(len(unique))
	chosen := make([]*fetchPart, 0, fits)
	for i := range unique {
		if fp := unique[(start+i)%len(unique)]; i < fits {
			chosen = append(chosen, fp)
		} else {
			unread(fp)
		}
	}
	return chosen
}

// unread answers a partition not read in this fetch: no records, no error, and its
// high-water mark as the agent mirrors it.
func (s *Server) unread(fp *fetchPart) {
	hwm := s.mirror.HWM(fp.p)
	fp.out.HighWatermark, fp.out.LastStableOffset = hwm, hwm
}

// later returns the later of two times.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// refusedOnly says whether a fetch found no records and some partition's owner refused
// to read it for want of room.
func refusedOnly(parts []*fetchPart) bool {
	refused := false
	for _, fp := range parts {
		if len(fp.records) > 0 {
			return false
		}
		refused = refused || fp.refused
	}
	return refused
}

// answerNow says whether a fetch must be answered without waiting for min bytes, as
// Kafka's broker does: a partition has an error or a preferred read replica to tell, or
// none is left to read (each answered with an error or read up to its max bytes; a
// round would return at once, and the wait would spin until max wait).
func answerNow(resp *kmsg.FetchResponse, parts []*fetchPart) bool {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 || p.PreferredReadReplica >= 0 {
				return true
			}
		}
	}
	for _, fp := range parts {
		if !fp.done {
			return false
		}
	}
	return true
}

// fetchResult is one partition's read, back.
type fetchResult struct {
	fp   *fetchPart
	resp *partitionpb.FetchResponse
	err  error
}

// fetchReads are the reads of one fetch's partitions. A read a round stopped waiting for
// (another partition found records first) stays the partition's read: the next round
// waits for its answer rather than asking again, so that a partition has one long-poll
// parked at its log end per fetch, and records a poll wakes to after its round are
// taken, not dropped.
type fetchReads struct {
	c       *actors.Client
	results chan fetchResult // as many as partitions: each has at most one read at a time
	running int
}

func newFetchReads(c *actors.Client, parts []*fetchPart) *fetchReads {
	return &fetchReads{c: c, results: make(chan fetchResult, len(parts))}
}

// round reads every partition not yet answered and not still being read, each waiting
// up to wait at its log end, and returns the record bytes found. It returns once every
// read is back, at until with what is back by then, or, with a wait, as soon as one of
// them found records, with what is back by then.
func (s *Server) round(ctx context.Context, f *fetchReads, parts []*fetchPart, wait time.Duration, until time.Time) int {
	for _, fp := range parts {
		if fp.done || fp.reading {
			continue
		}
		fp.reading = true
		f.running++
		read := &partitionpb.FetchRequest{Topic: fp.p.Topic, Partition: fp.p.Partition,
			Offset: fp.offset, MaxBytes: fp.maxBytes, MaxWaitMs: int32(wait.Milliseconds()), TopicIncarnation: fp.incarnation}
		go func() {
			resp, err := f.c.Fetch(ctx, read)
			f.results <- fetchResult{fp, resp, err}
		}()
	}
	total := 0
	take := func(res fetchResult) int {
		f.running--
		res.fp.reading = false
		return s.answer(res.fp, res.resp, res.err)
	}
	stop := time.NewTimer(time.Until(until))
	defer stop.Stop()
	for f.running > 0 {
		var res fetchResult
		select {
		case res = <-f.results:
		case <-ctx.Done():
			return total
		case <-stop.C:
			return total // the reads still out stay the partitions' reads
		}
		if n := take(res); n > 0 {
			total += n
			if wait > 0 {
				// Take whatever else is back already, and answer.
				for {
					select {
					case res = <-f.results:
						total += take(res)
						continue
					default:
					}
					return total
				}
			}
		}
	}
	return total
}

// answer adds a partition's read to its response and returns the record bytes it added.
// A partition that fails keeps what it read before (its error then waits for the next
// fetch, as Kafka answers records or an error, not both).
func (s *Server) answer(fp *fetchPart, resp *partitionpb.FetchResponse, err error) int {
	out := fp.out
	if err == nil && resp.Code != partitionpb.Code_CODE_OK {
		err = errPartition(resp.Code)
	}
	if pe, ok := err.(partitionError); ok && pe.code == partitionpb.Code_CODE_RESOURCE_EXHAUSTED {
		// The owner's reads from the store have no room for this one now: nothing this
		// time, as a broker answers a partition it has no room for (Kafka clients know
		// no error for it: Java's consumer throws on REQUEST_TIMED_OUT in a fetch), and
		// the client fetches it again.
		fp.done, fp.refused = true, true
		if len(fp.records) == 0 {
			// The owner's mark where it gave one (a refused read does); else the
			// mirror's, which may lag, never below the offset asked for.
			hwm := max(resp.HighWaterMark, s.mirror.HWM(fp.p), fp.offset)
			out.HighWatermark, out.LastStableOffset = hwm, hwm
			if resp.HighWaterMark > 0 {
				out.LogStartOffset = resp.LogStartOffset
			}
		}
		return 0
	}
	if err != nil {
		fp.done = true
		if len(fp.records) == 0 {
			out.ErrorCode = codeOf(err)
			if pe, ok := err.(partitionError); ok {
				out.ErrorCode = partitionCode(pe.code)
				out.HighWatermark, out.LastStableOffset, out.LogStartOffset = resp.HighWaterMark, resp.HighWaterMark, resp.LogStartOffset
			}
		}
		return 0
	}
	out.HighWatermark, out.LastStableOffset, out.LogStartOffset = resp.HighWaterMark, resp.HighWaterMark, resp.LogStartOffset
	added := 0
	for _, r := range resp.Records {
		// Its fields at their smallest besides the payload: Kafka counts min bytes in
		// encoded bytes, so a record with no key, value or headers counts too.
		added += minRecordBytes + r.PayloadBytes()
	}
	if len(resp.Records) > 0 {
		fp.records = append(fp.records, resp.Records...)
		fp.offset = resp.Records[len(resp.Records)-1].Offset + 1
		fp.bytes += added
		fp.maxBytes -= int32(min(added, int(fp.maxBytes)))
		fp.done = fp.maxBytes <= 0
	}
	return added
}

// partitionError is a partition's answer that is not OK.
type partitionError struct{ code partitionpb.Code }

func errPartition(c partitionpb.Code) error { return partitionError{c} }
func (e partitionError) Error() string      { return e.code.String() }

// trim drops records past a request's max bytes, in request order; the first partition
// with records keeps them whatever their size, so that a consumer always progresses.
func (s *Server) trim(parts []*fetchPart, maxBytes int) {
	if maxBytes <= 0 {
		return
	}
	total := 0
	for _, fp := range parts {
		if fp.bytes == 0 {
			continue
		}
		if total > 0 && total+fp.bytes > maxBytes {
			fp.records = nil
			continue
		}
		total += fp.bytes
	}
}

// bounds returns a partition's log start and high-water mark: a read past any offset
// the partition could have assigned is answered with both and reads nothing.
func (s *Server) bounds(ctx context.Context, c *actors.Client, p coordination.Partition) (start, hwm int64, code int16) {
	resp, err := c.Fetch(ctx, &partitionpb.FetchRequest{Topic: p.Topic, Partition: p.Partition, Offset: math.MaxInt64, MaxBytes: 1})
	if err != nil {
		return 0, 0, codeOf(err)
	}
	if resp.Code != partitionpb.Code_CODE_OUT_OF_RANGE {
		return 0, 0, partitionCode(resp.Code)
	}
	return resp.LogStartOffset, resp.HighWaterMark, errNone
}

// listOffsets answers the earliest (-2) and latest (-1) offsets, and for a timestamp the
// first offset whose record has that timestamp or a later one (-1 when none has).
func (s *Server) listOffsets(ctx context.Context, r *kmsg.ListOffsetsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
	c, ok := s.client()
	for _, t := range r.Topics {
		rt := kmsg.NewListOffsetsResponseTopic()
		rt.Topic = t.Topic
		spec, specErr := s.liveTopic(ctx, t.Topic)
		for _, p := range t.Partitions {
			rp := kmsg.NewListOffsetsResponseTopicPartition()
			rp.Partition, rp.Timestamp, rp.Offset, rp.LeaderEpoch = p.Partition, -1, -1, -1
			switch {
			case specErr != nil:
				rp.ErrorCode = codeOf(specErr)
			case p.Partition < 0 || p.Partition >= spec.Partitions:
				rp.ErrorCode = errUnknownTopicOrPartition
			case !ok:
				rp.ErrorCode = kerr.NotLeaderForPartition.Code
			default:
				rp.Offset, rp.Timestamp, rp.ErrorCode = s.offsetFor(ctx, c, coordination.Partition{Topic: t.Topic, Partition: p.Partition}, p.Timestamp)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// offsetFor answers one partition of ListOffsets.
func (s *Server) offsetFor(ctx context.Context, c *actors.Client, p coordination.Partition, ts int64) (offset, at int64, code int16) {
	start, hwm, code := s.bounds(ctx, c, p)
	switch {
	case code != errNone:
		return -1, -1, code
	case ts == -1:
		return hwm, -1, errNone
	case ts == -2:
		return start, -1, errNone
	case ts < 0:
		return -1, -1, kerr.InvalidRequest.Code
	}
	// The segment index knows each segment's newest timestamp: read from the first that
	// may hold one at ts or later, and only as far into the index as that one.
	for base := start; ; {
		seg, ok, err := s.coord.FirstSegment(ctx, p.Topic, p.Partition, base, func(m coordination.SegmentMeta) bool { return m.MaxTs >= ts })
		if err != nil {
			return -1, -1, codeOf(err)
		}
		if !ok {
			break
		}
		for from := seg.Base; from <= seg.Last; {
			resp, err := c.Fetch(ctx, &partitionpb.FetchRequest{Topic: p.Topic, Partition: p.Partition, Offset: from, MaxBytes: 1 << 20})
			if err != nil {
				return -1, -1, codeOf(err)
			}
			if resp.Code != partitionpb.Code_CODE_OK {
				return -1, -1, partitionCode(resp.Code)
			}
			if len(resp.Records) == 0 {
				break
			}
			for _, r := range resp.Records {
				if r.TimestampMs >= ts {
					return r.Offset, r.TimestampMs, errNone
				}
			}
			from = resp.Records[len(resp.Records)-1].Offset + 1
		}
		base = seg.Last + 1
	}
	return -1, -1, errNone
}
