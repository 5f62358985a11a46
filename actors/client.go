package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
)

// ClientOptions tune request routing. Zero fields take the documented defaults.
type ClientOptions struct {
	// AttemptTimeout bounds one request to a partition's owner. Default 5s.
	AttemptTimeout time.Duration
	// RetryFor bounds the retries of a request whose partition is moving or unavailable.
	// Default 10s. The caller's context can end it sooner.
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
}

// NewClient routes requests through c.
func NewClient(c *cluster.Cluster, place *Placement, opts ClientOptions) *Client {
	cl := &Client{cluster: c, place: place, opts: opts.withDefaults(), changed: make(chan struct{})}
	c.ActorSystem.EventStream.Subscribe(func(evt any) {
		if _, ok := evt.(*cluster.ClusterTopology); ok {
			cl.mu.Lock()
			close(cl.changed)
			cl.changed = make(chan struct{})
			cl.mu.Unlock()
		}
	})
	return cl
}

func (c *Client) topologyChanged() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// owner is the address of the member that should host p now.
func (c *Client) owner(p coordination.Partition) string {
	return c.place.Owner(c.cluster.MemberList.Members().Members(), p)
}

type answer struct {
	res any
	err error
}

// attempt sends req once. It gives up early, with errOwnerLeft, when the member the
// request went to leaves the cluster: waiting out the attempt timeout (and disthash's own
// 5s lookup timeout) on a dead owner is most of a failover otherwise. Nothing is lost by
// giving up: the dead owner cannot commit anything any more.
func (c *Client) attempt(id string, p coordination.Partition, req proto.Message, timeout time.Duration) (any, error) {
	owner := c.owner(p)
	done := make(chan answer, 1)
	go func() {
		res, err := c.cluster.Request(id, PartitionKind, req, cluster.WithTimeout(timeout), cluster.WithRetryCount(1))
		done <- answer{res, err}
	}()
	for {
		select {
		case a := <-done:
			return a.res, a.err
		case <-c.topologyChanged():
			if owner != "" && !c.cluster.MemberList.ContainsMemberID(memberIDAt(c.cluster, owner)) {
				return nil, errOwnerLeft
			}
		}
	}
}

var errOwnerLeft = errors.New("the owner left the cluster")

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
// particular. A retry of a batch still being written answers Unavailable at the
// partition, so that this retries until the first attempt's outcome is known.
func (c *Client) ProduceRequest(ctx context.Context, req *partitionpb.ProduceRequest) (*partitionpb.ProduceResponse, error) {
	p := coordination.Partition{Topic: req.Topic, Partition: req.Partition}
	var resp *partitionpb.ProduceResponse
	err := c.call(ctx, p, req, func(m proto.Message) bool {
		resp = m.(*partitionpb.ProduceResponse)
		return resp.Code != partitionpb.Code_CODE_UNAVAILABLE
	})
	return resp, err
}

// Fetch reads records of a partition from its owner.
func (c *Client) Fetch(ctx context.Context, req *partitionpb.FetchRequest) (*partitionpb.FetchResponse, error) {
	p := coordination.Partition{Topic: req.Topic, Partition: req.Partition}
	var resp *partitionpb.FetchResponse
	err := c.call(ctx, p, req, func(m proto.Message) bool {
		resp = m.(*partitionpb.FetchResponse)
		return resp.Code != partitionpb.Code_CODE_UNAVAILABLE
	})
	return resp, err
}

// call requests until accept returns true or the retry budget ends; the last answer
// stays with accept's caller.
func (c *Client) call(ctx context.Context, p coordination.Partition, req proto.Message, accept func(proto.Message) bool) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.RetryFor)
	defer cancel()
	id := Identity(p)
	timeout := c.opts.AttemptTimeout
	if fr, ok := req.(*partitionpb.FetchRequest); ok {
		timeout += time.Duration(fr.MaxWaitMs) * time.Millisecond // a long-poll is not a timeout
	}
	backoff := 25 * time.Millisecond
	var answered bool
	var last error
	for {
		res, err := c.attempt(id, p, req, timeout)
		if errors.Is(err, errOwnerLeft) {
			last = err
			continue // retry at once: the new owner is known
		}
		if err == nil {
			if m, ok := res.(proto.Message); ok {
				answered = true
				if accept(m) {
					return nil
				}
				last = nil
			} else {
				last = fmt.Errorf("unexpected answer %T", res)
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			if answered && last == nil {
				return nil // the last answer (unavailable) stands
			}
			return fmt.Errorf("%w: %s: no answer within %s: %v", ErrUnavailable, p, c.opts.RetryFor, last)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}
