package kafka

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/coordination"
)

// commitChunk is how many partitions' offsets go into one etcd transaction (etcd's
// default --max-txn-ops is 128).
const commitChunk = 100

// offsetCommit stores a group's offsets in etcd, where the gRPC API and every agent read
// them, once the group's coordinator has checked the commit (commitChecked), fenced on its
// claim on the group: a coordinator another agent has replaced writes nothing.
func (s *Server) offsetCommit(ctx context.Context, r *kmsg.OffsetCommitRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
	codes := map[coordination.Partition]int16{}
	var pending []coordination.Partition
	offsets := map[coordination.Partition]coordination.GroupOffset{}
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			part := coordination.Partition{Topic: t.Topic, Partition: p.Partition}
			codes[part] = errNone
			if coordination.ValidateTopicName(t.Topic) != nil {
				// No topic can have it: this partition only, not the transaction the
				// others share (which it would fail whole).
				codes[part] = errUnknownTopicOrPartition
				continue
			}
			o := coordination.GroupOffset{Offset: p.Offset}
			if p.Metadata != nil {
				o.Metadata = *p.Metadata
			}
			if len(o.Metadata) > coordination.MaxOffsetMetadataBytes {
				codes[part] = kerr.OffsetMetadataTooLarge.Code // this partition only, as Kafka
				continue
			}
			offsets[part] = o
			pending = append(pending, part)
		}
	}
	gc, code := s.groups.claim(ctx, r.Group)
	if code == errNone {
		code = s.groups.commitChecked(ctx, r.Group, gc, r.MemberID, r.Generation, r.InstanceID, func() {
			s.writeOffsets(ctx, gc, pending, offsets, codes)
		})
	}
	if code != errNone {
		for part := range codes { // the group's refusal is every partition's
			codes[part] = code
		}
	}
	for _, t := range r.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, codes[coordination.Partition{Topic: t.Topic, Partition: p.Partition}]
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// writeOffsets commits the offsets of pending through gc, in chunks of one transaction
// each, and sets their codes.
func (s *Server) writeOffsets(ctx context.Context, gc *coordination.GroupClaim, pending []coordination.Partition,
	offsets map[coordination.Partition]coordination.GroupOffset, codes map[coordination.Partition]int16) {
	sort.Slice(pending, func(i, j int) bool { return pending[i].String() < pending[j].String() })
	for len(pending) > 0 {
		n := min(len(pending), commitChunk)
		if commitRun(ctx, gc, pending[:n], offsets, codes) {
			s.groups.fenced(gc)
			for _, p := range pending[n:] {
				codes[p] = kerr.NotCoordinator.Code
			}
			return
		}
		pending = pending[n:]
	}
}

// commitChecked checks a commit to the group name through its claim gc (checkCommit)
// and, if the check passes, runs write. A commit checked at one generation of the
// group's state here (a state made anew counts from 0 again) waits until the commits of
// another being written are done, and is checked again then, so that none checked at a
// generation lands on top of a later one's in etcd and takes the group's offsets back:
// the offsets move on with the generations, as Kafka orders a group's commits in its
// log. Commits of one generation are written side by side (each partition is one
// member's). The code is the check's, NOT_COORDINATOR when gc is no longer the group's
// claim here, or COORDINATOR_NOT_AVAILABLE when the commits before it were not done
// within offsetsTimeout (they wait on etcd): clients retry both.
func (gs *groups) commitChecked(ctx context.Context, name string, gc *coordination.GroupClaim, memberID string,
	generation int32, instanceID *string, write func()) int16 {
	wctx, cancel := context.WithTimeout(ctx, offsetsTimeout) // bounds the waits alone
	defer cancel()
	for {
		gs.mu.Lock()
		c := gs.claims[name]
		if c == nil || c.gc != gc {
			gs.mu.Unlock()
			return kerr.NotCoordinator.Code
		}
		g, at, code := gs.checkCommit(name, memberID, generation, instanceID)
		if code == errNone && gs.claims[name] != c {
			code = kerr.NotCoordinator.Code // the check found the claim's session gone
		}
		if code != errNone {
			gs.mu.Unlock()
			return code
		}
		if c.writing == 0 || c.writingGroup == g && c.writingGen == at {
			if c.writing == 0 {
				c.writingGroup, c.writingGen, c.written = g, at, make(chan struct{})
			}
			c.writing++
			gs.mu.Unlock()
			defer gs.committed(c)
			write()
			return errNone
		}
		written := c.written
		gs.mu.Unlock()
		if gs.testHookCommitWait != nil {
			gs.testHookCommitWait()
		}
		select {
		case <-written:
		case <-wctx.Done():
			return kerr.CoordinatorNotAvailable.Code
		}
	}
}

// committed is told that a commit through c, counted in c.writing, is done. The last
// lets go of the group's state it was checked against, which may have been dropped since
// (its members' metadata can be megabytes).
func (gs *groups) committed(c *claim) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if c.writing--; c.writing == 0 {
		close(c.written)
		c.writingGroup = nil
	}
}

// commitRun commits the offsets of parts in one transaction and sets their codes. A
// refusal of one partition (its topic or it does not exist, its offset is negative)
// fails the whole transaction: parts are then committed one at a time,
// so that only the refused are refused, as Kafka answers each partition on its own (a
// consumer of a topic just deleted still commits its others). It reports whether the
// group's claim was fenced (parts not committed are then NOT_COORDINATOR).
func commitRun(ctx context.Context, gc *coordination.GroupClaim, parts []coordination.Partition,
	offsets map[coordination.Partition]coordination.GroupOffset, codes map[coordination.Partition]int16) bool {
	run := make(map[coordination.Partition]coordination.GroupOffset, len(parts))
	for _, p := range parts {
		run[p] = offsets[p]
	}
	err := storeOffsets(ctx, func(ctx context.Context) error { return gc.CommitOffsets(ctx, run) })
	switch {
	case err == nil:
		return false
	case errors.Is(err, coordination.ErrFenced):
		for _, p := range parts {
			codes[p] = kerr.NotCoordinator.Code
		}
		return true
	case len(parts) > 1 && (errors.Is(err, coordination.ErrTopicNotFound) ||
		errors.Is(err, coordination.ErrPartitionNotFound) || errors.Is(err, coordination.ErrOffsetOutOfRange)):
		for i := range parts {
			if commitRun(ctx, gc, parts[i:i+1], offsets, codes) {
				for _, p := range parts[i+1:] {
					codes[p] = kerr.NotCoordinator.Code
				}
				return true
			}
		}
		return false
	}
	for _, p := range parts {
		codes[p] = offsetsCode(err)
	}
	return false
}

// checkCommit validates a commit as Kafka's group coordinator does, and returns the
// group's state and its generation the commit was checked at (nil and -1: no state
// here). A standalone
// consumer's (generation -1, no member) is taken while the group has no members, and
// refused as UNKNOWN_MEMBER_ID while it has (it would overwrite their offsets). A member's
// is taken at the group's current generation while the group is stable or preparing a
// rebalance (a member commits what it processed before it rejoins: refused, its
// successor would process it again), and refused as REBALANCE_IN_PROGRESS while the
// rebalance completes (its assignment is about to change). Called under gs.mu.
func (gs *groups) checkCommit(name, memberID string, generation int32, instanceID *string) (*group, int32, int16) {
	g, code := gs.get(name) // nil: no member here
	at := int32(-1)
	if g != nil {
		at = g.generation
	}
	switch {
	case code != errNone:
		return g, at, code
	case generation < 0 && memberID == "":
		if g != nil && len(g.members) > 0 {
			return g, at, kerr.UnknownMemberID.Code
		}
		return g, at, errNone
	}
	return g, at, g.checkIn(memberID, generation, instanceID, stateCompleting)
}

// offsetFetch answers a group's committed offsets (-1 for a partition without one); a
// null topic list (v2+) asks for every partition the group has committed.
func (s *Server) offsetFetch(ctx context.Context, r *kmsg.OffsetFetchRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
	var got map[coordination.Partition]coordination.GroupOffset
	err := storeOffsets(ctx, func(ctx context.Context) (err error) { got, err = s.coord.FetchOffsets(ctx, r.Group); return err })
	if err != nil {
		resp.ErrorCode = offsetsCode(err)
		if coordinationInvalid(err) {
			resp.ErrorCode = kerr.InvalidGroupID.Code
		}
		if r.Version < 2 {
			// Before v2 the answer has no error of its own (it is not encoded): each
			// partition asked for carries it, or the client would read no offsets and
			// no error.
			for _, t := range r.Topics {
				rt := kmsg.NewOffsetFetchResponseTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewOffsetFetchResponseTopicPartition()
					rp.Partition, rp.Offset, rp.LeaderEpoch, rp.ErrorCode = p, -1, -1, resp.ErrorCode
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
		}
		return resp
	}
	byTopic := map[string][]int32{}
	var topics []string
	if r.Topics == nil {
		for p := range got {
			if _, ok := byTopic[p.Topic]; !ok {
				topics = append(topics, p.Topic)
			}
			byTopic[p.Topic] = append(byTopic[p.Topic], p.Partition)
		}
		sort.Strings(topics)
	} else {
		for _, t := range r.Topics {
			topics = append(topics, t.Topic)
			byTopic[t.Topic] = append(byTopic[t.Topic], t.Partitions...)
		}
	}
	for _, t := range topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = t
		parts := byTopic[t]
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		for _, p := range parts {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch = p, -1, -1
			if o, ok := got[coordination.Partition{Topic: t, Partition: p}]; ok {
				rp.Offset, rp.Metadata = o.Offset, strp(o.Metadata)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// listGroups lists the groups this agent coordinates: those with members here and those
// with offsets in etcd that hash to it, so that the union over all brokers (what admin
// tools ask for) names each group once.
func (s *Server) listGroups(ctx context.Context, r *kmsg.ListGroupsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ListGroupsResponse)
	live := s.groups.states()
	var names []string
	if err := storeOffsets(ctx, func(ctx context.Context) (err error) {
		names, err = s.coord.Groups(ctx)
		return err
	}); err != nil {
		resp.ErrorCode = offsetsCode(err)
		return resp
	}
	for _, name := range names {
		if _, ok := live[name]; !ok && s.isCoordinator(name) {
			live[name] = [2]string{"consumer", stateEmpty}
		}
	}
	sorted := make([]string, 0, len(live))
	for name := range live {
		sorted = append(sorted, name)
	}
	sort.Strings(sorted)
	for _, name := range sorted {
		st := live[name]
		if len(r.StatesFilter) > 0 && !wanted(r.StatesFilter, st[1]) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState = name, st[0], st[1]
		resp.Groups = append(resp.Groups, lg)
	}
	return resp
}

// offsetsTimeout bounds a group's offsets read or write in etcd: past it the client is
// told to find its coordinator again and retry, rather than wait on an etcd that is away.
const offsetsTimeout = 10 * time.Second

// storeOffsets runs an etcd read or write of offsets within offsetsTimeout.
func storeOffsets(ctx context.Context, do func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, offsetsTimeout)
	defer cancel()
	return do(ctx)
}

// offsetsCode is the Kafka code of a failed offsets read or write: what codeOf knows
// (an unknown partition, an offset out of range), else COORDINATOR_NOT_AVAILABLE, which
// clients retry (UNKNOWN_SERVER_ERROR, for etcd unreachable, made them give up: the Java
// consumer's commitSync throws, its poll does on a failed offset fetch).
func offsetsCode(err error) int16 {
	if code := codeOf(err); code != kerr.UnknownServerError.Code && code != kerr.RequestTimedOut.Code {
		return code
	}
	return kerr.CoordinatorNotAvailable.Code
}
