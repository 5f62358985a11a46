package actors

import (
	"context"
	"fmt"
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
	opts    ClientOptions
}

// NewClient routes requests through c.
func NewClient(c *cluster.Cluster, opts ClientOptions) *Client {
	return &Client{cluster: c, opts: opts.withDefaults()}
}

// Produce sends records to a partition and returns its answer once they are committed.
// A response whose Code is not OK after the retries is returned as is, with a nil error;
// an error means no answer came.
func (c *Client) Produce(ctx context.Context, p coordination.Partition, records []*partitionpb.Record) (*partitionpb.ProduceResponse, error) {
	req := &partitionpb.ProduceRequest{Topic: p.Topic, Partition: p.Partition, Records: records}
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
		res, err := c.cluster.Request(id, PartitionKind, req, cluster.WithTimeout(timeout), cluster.WithRetryCount(1))
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
