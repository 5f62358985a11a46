package actors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
)

// ClientOptions tune request routing. Zero fields take the documented defaults.
type ClientOptions struct {
	// AttemptTimeout bounds one request to a partition's owner. Default 5s.
	AttemptTimeout time.Duration
	// RetryFor bounds a request, all its attempts included, while its partition is moving
	// or unavailable; a fetch's long-poll wait comes on top. Default 10s. The caller's
	// context can end it sooner.
	RetryFor time.Duration
}

func (o ClientOptions) withDefaults() ClientOptions {
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 5 * time.Second
	}
	if o.RetryFor <= 0 {
		o.RetryFor = 10 * time.Second
	}
	return o
}

// Client sends produce and fetch requests to partition actors through the cluster, from
// any agent to any partition. protoactor-go retries requests without backoff and drops
// messages to stale PIDs, so the client makes one attempt at a time and retries with
// capped exponential backoff while the partition moves (DESIGN.md §7). The gateway uses it.
type Client struct {
	cluster *cluster.Cluster
	place   *Placement
	opts    ClientOptions

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every topology change
	// ends holds, by partition identity, a channel closed (and dropped) at the next end
	// of one of its activations that this member hears of, while a call waits on it: the
	// placement actor of the agent that hosted the activation broadcasts its end to every
	// member.
	ends map[string]*endWatch
}

// endWatch is ends' entry of one partition: its channel and the calls waiting on it.
type endWatch struct {
	ended   chan struct{}
	waiting int
}

// NewClient routes requests through c.
func NewClient(c *cluster.Cluster, place *Placement, opts ClientOptions) *Client {
	cl := &Client{cluster: c, place: place, opts: opts.withDefaults(), changed: make(chan struct{}), ends: map[string]*endWatch{}}
	c.ActorSystem.EventStream.Subscribe(func(evt any) {
		switch e := evt.(type) {
		case *cluster.ClusterTopology:
			cl.mu.Lock()
			close(cl.changed)
			cl.changed = make(chan struct{})
			cl.mu.Unlock()
		case *cluster.ActivationTerminated:
			if e.ClusterIdentity.GetKind() == PartitionKind {
				// protoactor forgets an ended activation's address only on the agent that
				// hosted it: elsewhere a re-send would go to it first and die there.
				c.PidCache.RemoveByValue(e.ClusterIdentity.GetIdentity(), PartitionKind, e.Pid)
				cl.mu.Lock()
				if w := cl.ends[e.ClusterIdentity.GetIdentity()]; w != nil {
					close(w.ended)
					delete(cl.ends, e.ClusterIdentity.GetIdentity())
				}
				cl.mu.Unlock()
			}
		}
	})
	return cl
}

func (c *Client) topologyChanged() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// watchEnd returns a channel closed at the next end of an activation of partition
// identity id, and the func that stops the watch.
func (c *Client) watchEnd(id string) (<-chan struct{}, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.ends[id]
	if w == nil {
		w = &endWatch{ended: make(chan struct{})}
		c.ends[id] = w
	}
	w.waiting++
	return w.ended, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if w.waiting--; w.waiting == 0 && c.ends[id] == w {
			delete(c.ends, id)
		}
	}
}

// owner is the address of the member that should host p now.
func (c *Client) owner(p coordination.Partition) string {
	return c.place.Owner(c.cluster.MemberList.Members().Members(), p)
}

type answer struct {
	res any
	err error
}

var (
	errOwnerLeft       = errors.New("the owner left the cluster")
	errActivationEnded = errors.New("the partition's activation ended without answering")
)

// endGrace is how long after an activation's end an attempt it left unanswered is sent
// again: an answer the activation gave just before its end, on its way, still comes
// first (the end is broadcast after a stopping partition has answered what it wrote).
const endGrace = 25 * time.Millisecond

// memberIDAt returns the id of the member at addr, "" when none is.
func memberIDAt(c *cluster.Cluster, addr string) string {
	for _, m := range c.MemberList.Members().Members() {
		if m.Address() == addr {
			return m.Id
		}
	}
	return ""
}

// Produce sends records to a partition and returns its answer once they are committed.
// A response whose Code is not OK after the retries is returned as is, with a nil error;
// an error means no answer came.
func (c *Client) Produce(ctx context.Context, p coordination.Partition, records []*partitionpb.Record) (*partitionpb.ProduceResponse, error) {
	return c.ProduceRequest(ctx, &partitionpb.ProduceRequest{Topic: p.Topic, Partition: p.Partition, Records: records})
}

// ProduceRequest is Produce of a complete request, an idempotent producer's batch in
// particular. It gives the request an id (unless it has one), so that the partition
// answers a re-send after an attempt timeout with the first attempt's outcome instead of
// writing the records twice (requestLog). Each attempt says how long it will be waited
// for (WaitMs), after which a partition that held it while starting no longer takes it.
func (c *Client) ProduceRequest(ctx context.Context, req *partitionpb.ProduceRequest) (*partitionpb.ProduceResponse, error) {
	p := coordination.Partition{Topic: req.Topic, Partition: req.Partition}
	for req.RequestId == 0 {
		req.RequestId = rand.Uint64()
	}
	var resp *partitionpb.ProduceResponse
	err := c.call(ctx, p, req, func(m proto.Message, unanswered int) bool {
		resp = m.(*partitionpb.ProduceResponse)
		switch resp.Code {
		case partitionpb.Code_CODE_UNAVAILABLE:
			return false
		case partitionpb.Code_CODE_RESOURCE_EXHAUSTED:
			// A refusal leaves no trace at the partition: an attempt sent after this
			// one (its mailbox ran behind the attempt timeout) may still be written, and
			// its answer is the one that says so.
			return unanswered == 0
		}
		return true
	})
	return resp, err
}

// Fetch reads records of a partition from its owner.
func (c *Client) Fetch(ctx context.Context, req *partitionpb.FetchRequest) (*partitionpb.FetchResponse, error) {
	p := coordination.Partition{Topic: req.Topic, Partition: req.Partition}
	var resp *partitionpb.FetchResponse
	err := c.call(ctx, p, req, func(m proto.Message, _ int) bool {
		resp = m.(*partitionpb.FetchResponse)
		return resp.Code != partitionpb.Code_CODE_UNAVAILABLE
	})
	return resp, err
}

// Stats asks a partition's owner for its log's shape (partitionpb.FetchRequest.stats),
// taking its first answer: one without Stats set comes from an agent that does not know
// the field (it answered a fetch past the log end), one not OK from an owner that cannot
// say yet; either way its caller reads etcd instead.
func (c *Client) Stats(ctx context.Context, p coordination.Partition) (*partitionpb.FetchResponse, error) {
	var resp *partitionpb.FetchResponse
	req := &partitionpb.FetchRequest{Topic: p.Topic, Partition: p.Partition, Offset: math.MaxInt64, MaxBytes: 1, Stats: true}
	err := c.call(ctx, p, req, func(m proto.Message, _ int) bool {
		resp = m.(*partitionpb.FetchResponse)
		return true
	})
	return resp, err
}

// call requests until accept returns true or the retry budget ends; the last answer
// stays with accept's caller, which is also told how many attempts are still unanswered.
//
// An attempt that has no answer within the attempt timeout is not abandoned: the request
// is sent again, and the first answer to any attempt counts. The partition answers
// every attempt of a produce with the same outcome (requestLog), and an answer that comes
// late, a leaving owner's after it wrote what it held, is the one that says where the
// records are. An attempt is also repeated at once when the member it went to leaves
// the cluster: waiting out the attempt timeout (and disthash's own 5s lookup timeout) on
// a dead owner is most of a failover otherwise. Nothing acked is lost that way, and a
// request a dead owner committed, unanswered, is answered by the new owner from the
// request ids of the segments' index entries (requestLog.restore), not written again.
func (c *Client) call(ctx context.Context, p coordination.Partition, req proto.Message, accept func(m proto.Message, unanswered int) bool) error {
	wait, budget := c.opts.AttemptTimeout, c.opts.RetryFor
	if fr, ok := req.(*partitionpb.FetchRequest); ok {
		longPoll := time.Duration(fr.MaxWaitMs) * time.Millisecond // not a timeout
		wait, budget = wait+longPoll, budget+longPoll
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	deadline, _ := ctx.Deadline()
	id := Identity(p)
	answers := make(chan answer)
	send := func() {
		msg := req
		if pr, ok := req.(*partitionpb.ProduceRequest); ok {
			msg = withWait(pr, time.Until(deadline))
		}
		res, err := c.cluster.Request(id, PartitionKind, msg, cluster.WithTimeout(time.Until(deadline)), cluster.WithRetryCount(1))
		select {
		case answers <- answer{res, err}:
		case <-ctx.Done():
		}
	}
	var (
		answered   bool
		last       error
		owner      string // of the last attempt; "" once it left
		unanswered int    // attempts sent and not answered yet
		backoff    = 25 * time.Millisecond
		next       = time.NewTimer(0) // sends the next attempt
		changed    = c.topologyChanged()
		ended      <-chan struct{} // closed when an activation of p ends after the last attempt went
		unwatch    = func() {}
	)
	defer next.Stop()
	defer func() { unwatch() }()
	for {
		select {
		case <-next.C:
			owner = c.owner(p)
			unwatch()
			ended, unwatch = c.watchEnd(id)
			unanswered++
			go send()
			next.Reset(wait)
		case a := <-answers:
			unanswered--
			switch m, ok := a.res.(proto.Message); {
			case a.err != nil:
				last = a.err
			case !ok:
				last = fmt.Errorf("unexpected answer %T", a.res)
			default:
				answered, last = true, nil
				if accept(m, unanswered) {
					return nil
				}
			}
			next.Reset(backoff)
			backoff = min(2*backoff, time.Second)
		case <-changed:
			changed = c.topologyChanged()
			if owner != "" && !c.cluster.MemberList.ContainsMemberID(memberIDAt(c.cluster, owner)) {
				owner, last = "", errOwnerLeft
				next.Reset(0) // the new owner is known
			}
		case <-ended:
			ended = nil // until the next attempt watches again
			if unanswered > 0 {
				// An activation of p ended since the last attempt went: one stopped
				// (moved, or after a panic) drops what its mailbox still held, unanswered,
				// and the attempt would wait out its timeout. Sent again, it reaches the
				// next activation (an earlier one's end, heard late, costs an attempt).
				last = errActivationEnded
				next.Reset(endGrace)
			}
		case <-ctx.Done():
			if answered && last == nil {
				return nil // the last answer (unavailable) stands
			}
			if last == nil {
				last = fmt.Errorf("no answer to an attempt within %s", wait)
			}
			return fmt.Errorf("%w: %s: no answer within %s: %v", ErrUnavailable, p, budget, last)
		}
	}
}

// withWait is req as one attempt sends it: a shallow copy (its records shared, never
// written to) whose WaitMs is wait. A copy, since an earlier attempt's message may still
// be on its way out.
func withWait(req *partitionpb.ProduceRequest, wait time.Duration) *partitionpb.ProduceRequest {
	out := &partitionpb.ProduceRequest{}
	dst := out.ProtoReflect()
	req.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	out.WaitMs = max(wait.Milliseconds(), 1) // 0 would be no bound
	return out
}
