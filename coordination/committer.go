package coordination

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Committer commits the segments of many partitions together (group commit): the commits
// that arrive while its transaction is running wait for it and then go as one
// transaction, each guarded exactly as Lease.Commit guards it alone. An agent's etcd
// writes then follow the rate of its transactions, not the number of its partitions, and
// a commit waits for at most one transaction before its own.
//
// Fencing is unchanged: the group transaction applies only if every segment's guard
// holds. If any fails, or the outcome is unknown, nothing of the group is assumed and
// every segment is committed alone with Lease.Commit, which tells a fenced lease from a
// moved high-water mark and recognises a commit that had in fact been applied.
//
// A Committer is safe for concurrent use; the zero value is not usable (NewCommitter).
type Committer struct {
	c        *Client
	maxGroup int
	timeout  time.Duration

	mu      sync.Mutex
	queue   []*commitRequest
	running bool
}

type commitRequest struct {
	ctx  context.Context
	sc   segmentCommit
	done chan commitResult
}

type commitResult struct {
	rev int64
	err error
}

// groupTimeout bounds one group transaction; past it, its segments are committed alone
// under their callers' contexts.
const groupTimeout = 5 * time.Second

// NewCommitter returns a Committer writing through c. A group holds at most as many
// segments as fit c's MaxTxnOps (three compares per segment).
func (c *Client) NewCommitter() *Committer {
	return &Committer{c: c, maxGroup: max(1, c.opts.MaxTxnOps/3), timeout: groupTimeout}
}

// Commit commits meta under l, as Lease.Commit does, in a transaction shared with the
// segments of other partitions committed at the same time. It returns the revision of
// the transaction that indexed the segment.
func (g *Committer) Commit(ctx context.Context, l *Lease, meta SegmentMeta) (int64, error) {
	sc, err := l.segmentCommit(meta)
	if err != nil {
		return 0, err
	}
	req := &commitRequest{ctx: ctx, sc: sc, done: make(chan commitResult, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, req)
	if !g.running {
		g.running = true
		go g.run()
	}
	g.mu.Unlock()
	// No select on ctx: once queued the request may be in a transaction being applied,
	// and the caller must learn the outcome. The group transaction is bounded by
	// g.timeout and the fallback by ctx, so done always comes.
	r := <-req.done
	return r.rev, r.err
}

// run commits groups until the queue is empty.
func (g *Committer) run() {
	for {
		group := g.next()
		if len(group) == 0 {
			return
		}
		g.commit(group)
	}
}

// next takes the next group off the queue: at most maxGroup requests, one per partition
// (etcd refuses two writes of one key in a transaction; a partition's later commit waits
// for the next group).
func (g *Committer) next() []*commitRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		g.running = false
		return nil
	}
	var group, rest []*commitRequest
	seen := make(map[string]bool, len(g.queue))
	for _, r := range g.queue {
		key := r.sc.l.hwmKey
		if len(group) == g.maxGroup || seen[key] {
			rest = append(rest, r)
			continue
		}
		seen[key] = true
		group = append(group, r)
	}
	g.queue = rest
	return group
}

func (g *Committer) commit(group []*commitRequest) {
	metricCommitGroup.Observe(float64(len(group)))
	if len(group) == 1 {
		r := group[0]
		rev, err := r.sc.run(r.ctx)
		r.done <- commitResult{rev: rev, err: err}
		return
	}
	var guard []clientv3.Cmp
	var writes []clientv3.Op
	for _, r := range group {
		guard = append(guard, r.sc.guard()...)
		writes = append(writes, r.sc.writes()...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	resp, err := g.c.etcd.Txn(ctx).If(guard...).Then(writes...).Commit()
	cancel()
	if err == nil && resp.Succeeded {
		for _, r := range group {
			r.done <- commitResult{rev: resp.Header.Revision}
		}
		return
	}
	// A guard failed (some lease fenced, some high-water mark moved) or the outcome is
	// unknown: each segment on its own says which, and which was applied.
	metricCommitGroupFallbacks.Inc()
	for _, r := range group {
		go func() {
			rev, err := r.sc.run(r.ctx)
			r.done <- commitResult{rev: rev, err: err}
		}()
	}
}
