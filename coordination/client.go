package coordination

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Options configure a Client. Zero fields take the documented defaults.
type Options struct {
	// Root is the key prefix of the cluster. Default DefaultRoot ("/streamhouse").
	Root string
	// MaxTxnOps is the most operations etcd accepts in one transaction (its
	// --max-txn-ops). It bounds how many partitions one offset commit may name, and how
	// many idempotent producers one segment may hold (MaxProducerChanges). At least 4.
	// Default 128, etcd's default.
	MaxTxnOps int
	// Logger receives structured logs. Default: none.
	Logger *zap.Logger
	// Now returns the time written into values (created_at, acquired_at...). Default time.Now.
	Now func() time.Time
}

// DefaultMaxTxnOps is etcd's default --max-txn-ops.
const DefaultMaxTxnOps = 128

// Client reads and writes a cluster's metadata in etcd. It is safe for concurrent use.
type Client struct {
	etcd *clientv3.Client
	keys Keys
	opts Options
	log  *zap.Logger
}

// New returns a Client over an etcd client that the caller keeps owning (and closes).
func New(etcd *clientv3.Client, opts Options) (*Client, error) {
	keys, err := NewKeys(opts.Root)
	if err != nil {
		return nil, err
	}
	switch {
	case opts.MaxTxnOps == 0:
		opts.MaxTxnOps = DefaultMaxTxnOps
	case opts.MaxTxnOps < 4:
		// A commit puts its segment and high-water mark, and a producer's state and
		// another's deletion.
		return nil, invalidf("MaxTxnOps %d: want at least 4", opts.MaxTxnOps)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Client{etcd: etcd, keys: keys, opts: opts, log: opts.Logger}, nil
}

// Keys is the client's key layout.
func (c *Client) Keys() Keys { return c.keys }

// Etcd is the underlying etcd client.
func (c *Client) Etcd() *clientv3.Client { return c.etcd }

func (c *Client) now() time.Time { return c.opts.Now().UTC() }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own value types are marshalled; they always encode.
		panic(fmt.Sprintf("coordination: marshal %T: %v", v, err))
	}
	return string(b)
}

// retry runs op until it succeeds, fails for a reason retrying cannot fix (permanent
// returns true), or ctx ends. Transient etcd errors (no leader, connection lost) are
// retried with capped exponential backoff.
//
// Each attempt gets a bounded time, from firstAttempt doubling up to maxAttempt: a member
// that answers slowly (one just restarted applies the entries it missed before it
// replies) holds one attempt and the next goes to another member, while an etcd that is
// slow everywhere is still waited for. An attempt cut short may have been applied: op
// must recognise its own earlier success.
func retry(ctx context.Context, op func(context.Context) error, permanent func(error) bool) error {
	backoff, attempt := 20*time.Millisecond, firstAttempt
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		err := op(actx)
		timedOut := errors.Is(actx.Err(), context.DeadlineExceeded) // before cancel sets it
		cancel()
		if err != nil && timedOut && ctx.Err() == nil {
			err = fmt.Errorf("%w after %v: %v", errAttemptTimeout, attempt, err) // transient
		}
		if err == nil || permanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
		attempt = min(2*attempt, maxAttempt)
	}
}

// Attempt bounds of retry: the first is hundreds of times a healthy transaction, so
// that only a stuck member trips it.
const (
	firstAttempt = time.Second
	maxAttempt   = 8 * time.Second
)

// errAttemptTimeout: one attempt took too long; unlike the caller's deadline, retried.
var errAttemptTimeout = errors.New("coordination: etcd attempt timed out")
