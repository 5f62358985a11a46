package kafka

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// Group states as Kafka names them (DescribeGroups, ListGroups).
const (
	stateEmpty       = "Empty"
	statePreparing   = "PreparingRebalance"
	stateCompleting  = "CompletingRebalance"
	stateStable      = "Stable"
	stateDead        = "Dead"
	initialJoinDelay = 500 * time.Millisecond // group.initial.rebalance.delay.ms: members of a new group join one generation
	expiryTick       = 250 * time.Millisecond
)

// What one member may bring to its group: a client could otherwise grow the group's
// state, and what each rebalance sends its leader, without end. Consumers name one to a
// few protocols (Java's range and cooperative-sticky), each with metadata of their
// subscriptions: tens of kilobytes for a thousand topics.
const (
	maxMemberProtocols = 32
	maxMemberMetadata  = 1 << 20 // bytes of a member's protocol names and metadata
)

// DefaultMaxGroupMembers bounds the members of one group (Options.MaxGroupMembers), as
// Kafka's group.max.size: a join past it is refused GROUP_MAX_SIZE_REACHED.
const DefaultMaxGroupMembers = 1000

// groups is the coordinator of the consumer groups this agent coordinates (Kafka's
// classic group protocol). All state is behind one mutex: groups are few and every
// operation is short; joins and syncs wait on channels outside it. A group's state
// here, and the offsets committed for it, are good only under this agent's claim on it
// in etcd (claims.go), which fences off a coordinator that does not know yet that
// another took over.
type groups struct {
	s         *Server
	mu        sync.Mutex
	m         map[string]*group
	claims    map[string]*claim
	releasing sync.WaitGroup // claims being given up, or swept
	swept     time.Time      // when the last sweep started
	sweeping  bool
	stop      func()
	// testHookCommitWait, when set (by tests), runs when an offset commit finds commits
	// of another generation being written, before it waits for them.
	testHookCommitWait func()
}

type group struct {
	name         string
	state        string
	generation   int32
	protocolType string
	protocol     string
	leader       string
	members      map[string]*member
	pending      map[string]time.Time // member ids given to new members (KIP-394), until they join with them or the time
	support      map[string]int       // protocol name -> members that name it
	static       map[string]string    // group.instance.id -> member id, of static members
	timer        *time.Timer          // ends the join phase
	round        int                  // counts join phases: a timer that fired late for an old one does nothing
	initial      bool                 // the join phase of an empty group: wait the whole delay
}

type member struct {
	id, clientID, clientHost string
	instanceID               *string
	session, rebalance       time.Duration
	protocols                []kmsg.JoinGroupRequestProtocol
	assignment               []byte
	seen                     time.Time
	join                     chan *kmsg.JoinGroupResponse // set while its JoinGroup waits
	sync                     chan *kmsg.SyncGroupResponse // set while its SyncGroup waits
}

func newGroups(s *Server) *groups {
	g := &groups{s: s, m: map[string]*group{}, claims: map[string]*claim{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(expiryTick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				g.expire(now)
			}
		}
	}()
	g.stop = func() { cancel(); <-done }
	return g
}

// coordinator returns the broker that coordinates group: one agent for the whole cluster,
// by rendezvous hashing over the live agents, so every agent gives the same answer.
func (s *Server) coordinator(group string) broker {
	return rendezvous(s.brokers(), "group/"+group)
}

func (s *Server) isCoordinator(group string) bool {
	return s.coordinator(group).node == s.opts.Self.Node
}

func (s *Server) findCoordinator(_ *request, r *kmsg.FindCoordinatorRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.FindCoordinatorResponse)
	switch r.CoordinatorType {
	case 0: // a group
	case 1:
		// A transaction coordinator: refused as InitProducerId refuses a transactional id,
		// with a code clients do not retry. COORDINATOR_NOT_AVAILABLE, which they do, kept
		// a transactional producer asking until its own timeout (Java's max.block.ms, 60 s)
		// and then failing with no word of why.
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		resp.ErrorMessage = strp("transactions are not supported; only group coordinators")
		return resp
	default:
		resp.ErrorCode = kerr.InvalidRequest.Code
		resp.ErrorMessage = strp(fmt.Sprintf("coordinator type %d: only 0, groups", r.CoordinatorType))
		return resp
	}
	b := s.coordinator(r.CoordinatorKey)
	resp.NodeID, resp.Host, resp.Port = b.id, b.host, b.port
	return resp
}

// get returns the group's state here: nil (and NOT_COORDINATOR) when this agent does
// not coordinate it, in which case any state it held for it is dropped (the members
// rejoin at the coordinator they find); nil and no error when it has none, or none under
// a claim of its current session (which it then drops: its members rejoin).
func (gs *groups) get(name string) (*group, int16) {
	if name == "" {
		return nil, kerr.InvalidGroupID.Code
	}
	g := gs.m[name]
	if !gs.s.isCoordinator(name) {
		if g != nil {
			gs.drop(g)
		}
		return nil, kerr.NotCoordinator.Code
	}
	if g != nil && !gs.claimed(name) {
		if c := gs.claims[name]; c != nil && c.gc != nil {
			gs.unclaim(name, c)
		} else {
			gs.drop(g)
		}
		return nil, errNone
	}
	return g, errNone
}

// drop forgets a group, failing whatever of its members waits.
func (gs *groups) drop(g *group) {
	for _, m := range g.members {
		gs.removeMember(g, m, kerr.NotCoordinator.Code)
	}
	if g.timer != nil {
		g.timer.Stop()
	}
	delete(gs.m, g.name)
}

func newMemberID(clientID string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return clientID + "-" + hex.EncodeToString(b[:])
}

func (gs *groups) join(ctx context.Context, req *request, r *kmsg.JoinGroupRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.MemberID = r.MemberID
	fail := func(code int16) kmsg.Response { resp.ErrorCode = code; return resp }
	session := time.Duration(r.SessionTimeoutMillis) * time.Millisecond
	rebalance := time.Duration(r.RebalanceTimeoutMillis) * time.Millisecond
	if r.Version == 0 || rebalance <= 0 {
		rebalance = max(session, gs.s.opts.GroupRebalanceTimeout)
	}
	switch {
	case session < time.Second || session > 30*time.Minute:
		return fail(kerr.InvalidSessionTimeout.Code)
	case r.ProtocolType == "" || len(r.Protocols) == 0:
		return fail(kerr.InconsistentGroupProtocol.Code)
	case len(r.Protocols) > maxMemberProtocols || metadataBytes(r.Protocols) > maxMemberMetadata:
		return fail(kerr.InvalidRequest.Code)
	}
	// The protocols are kept while the member is: copies, not slices of the request's
	// frame, which would keep all of it.
	protos := cloneProtocols(r.Protocols)
	if _, code := gs.claim(ctx, r.Group); code != errNone {
		return fail(code)
	}
	gs.mu.Lock()
	g, code := gs.get(r.Group)
	if code == errNone && g == nil {
		if !gs.claimed(r.Group) { // given up since, this agent no longer coordinating it
			code = kerr.NotCoordinator.Code
		} else {
			g = &group{name: r.Group, state: stateEmpty, members: map[string]*member{}, pending: map[string]time.Time{},
				support: map[string]int{}, static: map[string]string{}}
			gs.m[r.Group] = g
		}
	}
	if code != errNone {
		gs.mu.Unlock()
		return fail(code)
	}
	if g.protocolType != "" && len(g.members) > 0 && (g.protocolType != r.ProtocolType || !g.supportsAny(r.Protocols)) {
		gs.mu.Unlock()
		return fail(kerr.InconsistentGroupProtocol.Code)
	}
	var m *member
	if id, ok := g.static[instance(r.InstanceID)]; ok {
		if r.MemberID != "" && r.MemberID != id {
			gs.mu.Unlock()
			return fail(kerr.FencedInstanceID.Code)
		}
		if r.MemberID == "" {
			// A static member restarted: it takes its place, under a new member id.
			m = gs.replaceStatic(g, instance(r.InstanceID), id, req)
			if out := g.rejoinedStatic(m, protos); out != nil {
				m.session, m.rebalance, m.seen = session, rebalance, time.Now()
				gs.mu.Unlock()
				out.SetVersion(r.Version)
				return out
			}
		}
	}
	if m == nil {
		m = g.members[r.MemberID]
	}
	_, pending := g.pending[r.MemberID]
	switch {
	case r.MemberID != "" && m == nil && !pending:
		gs.mu.Unlock()
		return fail(kerr.UnknownMemberID.Code)
	case m != nil && instance(m.instanceID) != instance(r.InstanceID):
		// A member's instance id is fixed when it first joins, as Kafka's.
		gs.mu.Unlock()
		return fail(kerr.FencedInstanceID.Code)
	case m == nil && len(g.members) >= gs.s.opts.MaxGroupMembers:
		gs.mu.Unlock()
		return fail(kerr.GroupMaxSizeReached.Code)
	case m == nil && !pending && r.Version >= 4 && instance(r.InstanceID) == "":
		// A new dynamic member is given its id first (KIP-394) and joins with it: a
		// client that gives up on its join (its own timeout may be shorter than the
		// group's join phase) and joins again is the same member, not a second one.
		id := newMemberID(req.clientID)
		gs.addPending(g, id, session)
		gs.mu.Unlock()
		resp.MemberID = id
		return fail(kerr.MemberIDRequired.Code)
	case m == nil:
		id := r.MemberID
		if !pending {
			id = newMemberID(req.clientID)
		}
		delete(g.pending, id)
		m = &member{id: id, clientID: req.clientID, clientHost: req.conn.RemoteAddr().String(), instanceID: r.InstanceID}
		g.members[m.id] = m
		if inst := instance(r.InstanceID); inst != "" {
			g.static[inst] = m.id
		}
	}
	g.setProtocols(m, protos)
	m.session, m.rebalance, m.seen = session, rebalance, time.Now()
	if g.protocolType == "" {
		g.protocolType = r.ProtocolType
	}
	if m.join != nil {
		// A second JoinGroup of the same member: the first one's answer is no longer awaited.
		close(m.join)
	}
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	m.join = ch
	switch g.state {
	case stateEmpty, stateStable, stateCompleting:
		gs.prepare(g)
	}
	if !g.initial && g.allJoined() {
		gs.completeJoin(g)
	}
	// The join phase ends by the longest rebalance timeout of the group's members (or
	// the initial delay): the answer comes by then, even to a member whose own timeout
	// is shorter. A dynamic member that stops waiting first (it hung up) leaves the group:
	// the phase ends without it, and it may join again under the id it has.
	wait := initialJoinDelay
	for _, o := range g.members {
		wait = max(wait, o.rebalance)
	}
	wait += time.Second
	resp.MemberID = m.id
	gs.mu.Unlock()
	defer req.watch()()
	code = kerr.RebalanceInProgress.Code
	select {
	case out, ok := <-ch:
		if !ok {
			return fail(kerr.RebalanceInProgress.Code) // superseded by its own later join
		}
		out.SetVersion(r.Version)
		return out
	case <-ctx.Done():
		code = kerr.NotCoordinator.Code
	case <-time.After(wait):
	}
	gs.mu.Lock()
	select {
	case out, ok := <-ch: // answered (or superseded) as the wait ended
		gs.mu.Unlock()
		if !ok {
			return fail(kerr.RebalanceInProgress.Code)
		}
		out.SetVersion(r.Version)
		return out
	default:
	}
	if m.join == ch { // not answered: it waits no more
		m.join, m.seen = nil, time.Now()
		if instance(m.instanceID) == "" && gs.m[g.name] == g && g.members[m.id] == m {
			// A dynamic member that stopped waiting (it hung up) leaves: the join phase
			// does not wait for it, nor is it given partitions. Its id is kept for it, so
			// that a client that gave up and joins again with it is the same member.
			gs.removeMember(g, m, code)
			gs.addPending(g, m.id, m.session)
			gs.membersChanged(g)
		}
	}
	gs.mu.Unlock()
	return fail(code)
}

// addPending keeps id for a new member to join with, for session; past MaxGroupMembers
// ids kept, the one kept the longest goes (a client that crashes and restarts in a loop
// leaves an id each time: they must not fill the group for its real members).
func (gs *groups) addPending(g *group, id string, session time.Duration) {
	if len(g.pending) >= gs.s.opts.MaxGroupMembers {
		first := ""
		for k, until := range g.pending {
			if first == "" || until.Before(g.pending[first]) {
				first = k
			}
		}
		delete(g.pending, first)
	}
	g.pending[id] = time.Now().Add(session)
}

// metadataBytes is what a member's protocols hold.
func metadataBytes(protos []kmsg.JoinGroupRequestProtocol) int {
	n := 0
	for _, p := range protos {
		n += len(p.Name) + len(p.Metadata)
	}
	return n
}

func cloneProtocols(protos []kmsg.JoinGroupRequestProtocol) []kmsg.JoinGroupRequestProtocol {
	out := make([]kmsg.JoinGroupRequestProtocol, len(protos))
	for i, p := range protos {
		out[i] = p
		out[i].Metadata = bytes.Clone(p.Metadata)
	}
	return out
}

// instance is a member's group.instance.id, "" for a dynamic member.
func instance(id *string) string {
	if id == nil {
		return ""
	}
	return *id
}

// replaceStatic gives the static member id's place to the instance that rejoined with
// no member id (it restarted): a new member id, its assignment kept; whatever the old
// incarnation waits for is answered FENCED_INSTANCE_ID, and its later requests are. Nil
// when the member is no longer in the group (the caller adds it as new).
func (gs *groups) replaceStatic(g *group, inst, id string, req *request) *member {
	m := g.members[id]
	if m == nil {
		delete(g.static, inst)
		return nil
	}
	gs.removeMember(g, m, kerr.FencedInstanceID.Code) // what it waits for is answered so
	m.id, m.clientID, m.clientHost = newMemberID(req.clientID), req.clientID, req.conn.RemoteAddr().String()
	g.members[m.id] = m
	g.count(m, 1)
	g.static[inst] = m.id
	if g.leader == id {
		g.leader = m.id
	}
	gs.s.log.Info("static group member replaced", zap.String("group", g.name),
		zap.String("instance", instance(m.instanceID)), zap.String("member", m.id))
	return m
}

// rejoinedStatic answers a static member that took its place back (replaceStatic) with
// the group's current generation, so that it syncs and gets its assignment again without
// a rebalance, as Kafka does while the group is stable and the protocol it would choose
// stays the one chosen (its metadata, which clients stamp with their generation and the
// partitions they own, is taken as new). Nil otherwise, and for the group's leader: the
// member joins as any other. (Kafka answers a restarted leader without a rebalance too,
// and clients recognise the case by a member id derived from the instance id; this
// coordinator rebalances instead, which every client handles.)
func (g *group) rejoinedStatic(m *member, protos []kmsg.JoinGroupRequestProtocol) *kmsg.JoinGroupResponse {
	if m == nil || g.state != stateStable || g.leader == m.id {
		return nil
	}
	before := m.protocols
	if g.setProtocols(m, protos); g.vote() != g.protocol {
		g.setProtocols(m, before)
		return nil
	}
	out := kmsg.NewPtrJoinGroupResponse()
	out.Generation, out.ProtocolType, out.Protocol = g.generation, strp(g.protocolType), strp(g.protocol)
	out.LeaderID, out.MemberID = g.leader, m.id
	return out
}

// supportsAny reports whether protos names a protocol every current member supports.
func (g *group) supportsAny(protos []kmsg.JoinGroupRequestProtocol) bool {
	for _, p := range protos {
		if g.allSupport(p.Name) {
			return true
		}
	}
	return false
}

// allSupport reports whether every member names the protocol: a count kept as members
// come, go and change their protocols, so that a join's check and a rebalance's vote
// take time in the protocols they look at, not in those times every member's.
func (g *group) allSupport(name string) bool { return g.support[name] == len(g.members) }

// setProtocols makes protos m's protocols; m is a member of g.
func (g *group) setProtocols(m *member, protos []kmsg.JoinGroupRequestProtocol) {
	g.count(m, -1)
	m.protocols = protos
	g.count(m, 1)
}

// count adds d to the count of each protocol m names (once, however often it names it).
func (g *group) count(m *member, d int) {
	for i, p := range m.protocols {
		if slices.ContainsFunc(m.protocols[:i], func(o kmsg.JoinGroupRequestProtocol) bool { return o.Name == p.Name }) {
			continue
		}
		if g.support[p.Name] += d; g.support[p.Name] == 0 {
			delete(g.support, p.Name)
		}
	}
}

func (g *group) allJoined() bool {
	for _, m := range g.members {
		if m.join == nil {
			return false
		}
	}
	return true
}

// prepare starts a rebalance: members are told at their next heartbeat or sync, and the
// join phase ends when all have rejoined or the longest rebalance timeout has passed
// (an empty group's waits initialJoinDelay, so that members starting together form one
// generation).
func (gs *groups) prepare(g *group) {
	for _, m := range g.members {
		if m.sync != nil {
			gs.answerSync(m, kerr.RebalanceInProgress.Code, nil, g)
		}
	}
	wait := initialJoinDelay
	g.initial = g.state == stateEmpty
	if !g.initial {
		wait = 0
		for _, m := range g.members {
			wait = max(wait, m.rebalance)
		}
	}
	g.state = statePreparing
	if g.timer != nil {
		g.timer.Stop()
	}
	g.round++
	round := g.round
	g.timer = time.AfterFunc(wait, func() {
		gs.mu.Lock()
		defer gs.mu.Unlock()
		if gs.m[g.name] == g && g.state == statePreparing && g.round == round {
			g.initial = false
			gs.completeJoin(g)
		}
	})
}

// completeJoin ends the join phase: members that did not rejoin leave, the generation
// advances, a protocol every member supports is chosen by the members' preferences, and
// every member gets its JoinGroup answer (the leader with everyone's metadata).
func (gs *groups) completeJoin(g *group) {
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	for _, m := range g.members {
		// A static member that did not rejoin keeps its place (it may be restarting),
		// as in Kafka, until its session expires.
		if m.join == nil && instance(m.instanceID) == "" {
			gs.removeMember(g, m, kerr.UnknownMemberID.Code)
		}
	}
	g.generation++
	if len(g.members) == 0 {
		g.state, g.protocol, g.leader, g.protocolType = stateEmpty, "", "", ""
		return
	}
	g.protocol = g.vote()
	if l := g.members[g.leader]; l == nil || l.join == nil {
		g.leader = "" // the leader is one that rejoined
		for _, id := range g.memberIDs() {
			if g.members[id].join != nil {
				g.leader = id
				break
			}
		}
	}
	g.state = stateCompleting
	for _, m := range g.members {
		if m.join == nil {
			continue // a static member away: its assignment waits for it
		}
		out := kmsg.NewPtrJoinGroupResponse()
		out.Generation, out.ProtocolType, out.Protocol = g.generation, strp(g.protocolType), strp(g.protocol)
		out.LeaderID, out.MemberID = g.leader, m.id
		if m.id == g.leader {
			for _, id := range g.memberIDs() {
				o := g.members[id]
				jm := kmsg.NewJoinGroupResponseMember()
				jm.MemberID, jm.InstanceID = o.id, o.instanceID
				for _, p := range o.protocols {
					if p.Name == g.protocol {
						jm.ProtocolMetadata = p.Metadata
					}
				}
				out.Members = append(out.Members, jm)
			}
		}
		m.join <- out
		m.join = nil
		m.seen = time.Now()
	}
	gs.s.log.Info("group rebalanced", zap.String("group", g.name), zap.Int32("generation", g.generation),
		zap.Int("members", len(g.members)), zap.String("protocol", g.protocol))
}

func (g *group) memberIDs() []string {
	ids := make([]string, 0, len(g.members))
	for id := range g.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// vote picks the protocol all members support that most members prefer first (Kafka's
// rule), ties broken by name.
func (g *group) vote() string {
	votes := map[string]int{}
	for _, m := range g.members {
		for _, p := range m.protocols {
			if g.allSupport(p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	best := ""
	for name, n := range votes {
		if best == "" || n > votes[best] || n == votes[best] && name < best {
			best = name
		}
	}
	return best
}

// removeMember takes m out of g, answering whatever it waits for with code.
func (gs *groups) removeMember(g *group, m *member, code int16) {
	if m.join != nil {
		out := kmsg.NewPtrJoinGroupResponse()
		out.ErrorCode, out.MemberID = code, m.id
		m.join <- out
		m.join = nil
	}
	if m.sync != nil {
		gs.answerSync(m, code, nil, g)
	}
	g.count(m, -1)
	delete(g.members, m.id)
	if inst := instance(m.instanceID); inst != "" && g.static[inst] == m.id {
		delete(g.static, inst)
	}
}

func (gs *groups) answerSync(m *member, code int16, assignment []byte, g *group) {
	out := kmsg.NewPtrSyncGroupResponse()
	out.ErrorCode, out.MemberAssignment = code, assignment
	out.ProtocolType, out.Protocol = strp(g.protocolType), strp(g.protocol)
	m.sync <- out
	m.sync = nil
}

// check validates a member's generation; errNone when it is current. A nil group (none
// here) has no members. A static member's request that names its instance with a member
// id another took since is FENCED_INSTANCE_ID: the instance restarted elsewhere.
func (g *group) check(memberID string, generation int32, instanceID *string) (*member, int16) {
	if g == nil {
		return nil, kerr.UnknownMemberID.Code
	}
	if id, ok := g.static[instance(instanceID)]; ok && id != memberID {
		return nil, kerr.FencedInstanceID.Code
	}
	m := g.members[memberID]
	switch {
	case m == nil:
		return nil, kerr.UnknownMemberID.Code
	case generation != g.generation:
		return m, kerr.IllegalGeneration.Code
	}
	return m, errNone
}

func (gs *groups) sync(ctx context.Context, req *request, r *kmsg.SyncGroupRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.SyncGroupResponse)
	gs.mu.Lock()
	g, code := gs.get(r.Group)
	var m *member
	if code == errNone {
		m, code = g.check(r.MemberID, r.Generation, r.InstanceID)
	}
	if code == errNone {
		m.seen = time.Now()
		switch g.state {
		case statePreparing:
			code = kerr.RebalanceInProgress.Code
		case stateStable:
			resp.MemberAssignment = m.assignment
			resp.ProtocolType, resp.Protocol = strp(g.protocolType), strp(g.protocol)
		case stateCompleting:
			ch := make(chan *kmsg.SyncGroupResponse, 1)
			if m.sync != nil {
				close(m.sync)
			}
			m.sync = ch
			if m.id == g.leader {
				assigned := map[string][]byte{}
				for _, a := range r.GroupAssignment {
					assigned[a.MemberID] = bytes.Clone(a.MemberAssignment) // kept, not the frame
				}
				for _, o := range g.members {
					o.assignment = assigned[o.id]
					if o.sync != nil {
						gs.answerSync(o, errNone, o.assignment, g)
					}
				}
				g.state = stateStable
			}
			session := m.session // join writes it, under the lock
			gs.mu.Unlock()
			defer req.watch()()
			resp.ErrorCode = kerr.RebalanceInProgress.Code
			select {
			case out, ok := <-ch:
				if !ok {
					return resp
				}
				out.SetVersion(r.Version)
				return out
			case <-ctx.Done():
				resp.ErrorCode = kerr.NotCoordinator.Code
			case <-time.After(session + time.Second):
			}
			gs.mu.Lock()
			select {
			case out, ok := <-ch: // answered (or superseded) as the wait ended
				gs.mu.Unlock()
				if !ok {
					return resp
				}
				out.SetVersion(r.Version)
				return out
			default:
			}
			if m.sync == ch { // not answered: it waits no more, and may expire
				m.sync, m.seen = nil, time.Now()
			}
			gs.mu.Unlock()
			return resp
		default:
			code = kerr.UnknownMemberID.Code
		}
	}
	gs.mu.Unlock()
	resp.ErrorCode = code
	return resp
}

func (gs *groups) heartbeat(r *kmsg.HeartbeatRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.HeartbeatResponse)
	resp.ErrorCode = gs.alive(r.Group, r.MemberID, r.Generation, r.InstanceID)
	return resp
}

// alive records that a member is alive (a heartbeat, an offset commit) and says whether
// it is in the group's current generation and the group is not rebalancing.
func (gs *groups) alive(name, memberID string, generation int32, instanceID *string) int16 {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	g, code := gs.get(name)
	if code != errNone {
		return code
	}
	return g.checkIn(memberID, generation, instanceID, statePreparing)
}

// checkIn validates a member's generation, as check, and counts the call as a sign of
// life; a current member is told REBALANCE_IN_PROGRESS while the group is in state busy.
func (g *group) checkIn(memberID string, generation int32, instanceID *string, busy string) int16 {
	m, code := g.check(memberID, generation, instanceID)
	if m != nil {
		m.seen = time.Now()
	}
	if code == errNone && g.state == busy {
		return kerr.RebalanceInProgress.Code
	}
	return code
}

func (gs *groups) leave(r *kmsg.LeaveGroupRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.LeaveGroupResponse)
	gs.mu.Lock()
	defer gs.mu.Unlock()
	g, code := gs.get(r.Group)
	if code != errNone {
		resp.ErrorCode = code
		return resp
	}
	leaving := []kmsg.LeaveGroupRequestMember{{MemberID: r.MemberID}}
	if r.Version >= 3 {
		leaving = r.Members // by member id, or by instance id (a static member's)
	}
	left := false
	for _, l := range leaving {
		lm := kmsg.NewLeaveGroupResponseMember()
		lm.MemberID, lm.InstanceID = l.MemberID, l.InstanceID
		var m *member
		if g != nil {
			id := l.MemberID
			if sid, ok := g.static[instance(l.InstanceID)]; ok {
				if id != "" && id != sid {
					lm.ErrorCode = kerr.FencedInstanceID.Code
				}
				id = sid
			}
			if lm.ErrorCode == errNone {
				m = g.members[id]
			}
		}
		switch {
		case m != nil:
			gs.removeMember(g, m, kerr.UnknownMemberID.Code)
			left = true
		case lm.ErrorCode == errNone:
			lm.ErrorCode = kerr.UnknownMemberID.Code
		}
		if r.Version < 3 {
			resp.ErrorCode = lm.ErrorCode
		}
		resp.Members = append(resp.Members, lm)
	}
	if left {
		gs.membersChanged(g)
	}
	return resp
}

// membersChanged rebalances after members left or expired.
func (gs *groups) membersChanged(g *group) {
	switch {
	case len(g.members) == 0:
		if g.timer != nil {
			g.timer.Stop()
			g.timer = nil
		}
		g.generation++
		g.state, g.protocol, g.leader, g.protocolType = stateEmpty, "", "", ""
	case g.state == statePreparing:
		if !g.initial && g.allJoined() {
			gs.completeJoin(g)
		}
	default:
		gs.prepare(g)
	}
}

// expire removes members silent for longer than their session timeout (a member waiting
// in JoinGroup is not silent) and forgets groups this agent no longer coordinates.
func (gs *groups) expire(now time.Time) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	for name, g := range gs.m {
		if !gs.s.isCoordinator(name) {
			gs.drop(g)
			continue
		}
		for id, until := range g.pending {
			if now.After(until) {
				delete(g.pending, id) // never joined with it
			}
		}
		expired := false
		for _, m := range g.members {
			if m.join == nil && m.sync == nil && now.Sub(m.seen) > m.session {
				gs.s.log.Info("group member expired", zap.String("group", name), zap.String("member", m.id))
				gs.removeMember(g, m, kerr.UnknownMemberID.Code)
				expired = true
			}
		}
		if expired {
			gs.membersChanged(g)
		}
		if g.state == stateEmpty && len(g.members) == 0 && len(g.pending) == 0 && g.timer == nil {
			delete(gs.m, name) // offsets stay in etcd; nothing else to keep
		}
	}
	gs.release(now)
}

func (gs *groups) describe(ctx context.Context, r *kmsg.DescribeGroupsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DescribeGroupsResponse)
	gs.mu.Lock()
	var unknown []int // groups without members here: etcd says whether they have offsets
	for _, name := range r.Groups {
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = name
		if !gs.s.isCoordinator(name) {
			dg.ErrorCode = kerr.NotCoordinator.Code
			resp.Groups = append(resp.Groups, dg)
			continue
		}
		g := gs.m[name]
		if g == nil {
			unknown = append(unknown, len(resp.Groups))
			resp.Groups = append(resp.Groups, dg)
			continue
		}
		dg.State, dg.ProtocolType, dg.Protocol = g.state, g.protocolType, g.protocol
		for _, id := range g.memberIDs() {
			m := g.members[id]
			dm := kmsg.NewDescribeGroupsResponseGroupMember()
			dm.MemberID, dm.InstanceID, dm.ClientID, dm.ClientHost = m.id, m.instanceID, m.clientID, m.clientHost
			for _, p := range m.protocols {
				if p.Name == g.protocol {
					dm.ProtocolMetadata = p.Metadata
				}
			}
			dm.MemberAssignment = m.assignment
			dg.Members = append(dg.Members, dm)
		}
		resp.Groups = append(resp.Groups, dg)
	}
	gs.mu.Unlock()
	// One bound for all of them: with etcd away, the request is answered within it.
	ctx, cancel := context.WithTimeout(ctx, offsetsTimeout)
	defer cancel()
	for _, i := range unknown {
		dg := &resp.Groups[i]
		dg.State = stateDead // Kafka's answer for a group it does not know
		offsets, err := gs.s.coord.FetchOffsets(ctx, dg.Group)
		switch {
		case err != nil:
			dg.ErrorCode = offsetsCode(err)
		case len(offsets) > 0:
			dg.State, dg.ProtocolType = stateEmpty, "consumer" // offsets and no members
		}
	}
	return resp
}

// states returns the groups this agent coordinates with their protocol type and state.
func (gs *groups) states() map[string][2]string {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	out := map[string][2]string{}
	for name, g := range gs.m {
		if gs.s.isCoordinator(name) {
			out[name] = [2]string{g.protocolType, g.state}
		}
	}
	return out
}

// shutdown drops every group; the claims end with the agent's session, which its
// node closes next.
func (gs *groups) shutdown() {
	gs.stop()
	gs.mu.Lock()
	for _, g := range gs.m {
		gs.drop(g)
	}
	gs.mu.Unlock()
	gs.releasing.Wait()
}
