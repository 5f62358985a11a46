package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/streamhouse/streamhouse/gateway/membudget"
)

// historyReadWait bounds how long a read waits for room in the agent's history read
// budget: its caller sends the fetch again after an attempt timeout (5 s by default,
// ClientOptions.AttemptTimeout), so a read queued longer serves nobody, and would wait
// ahead of the ones that do.
const historyReadWait = 5 * time.Second

// readCharge is what one fetch served from the store holds of the agent's history read
// budget, from its first piece the block cache does not hold until its answer is handed
// on, whether or not its caller still waits for it: each such piece (what its load reads
// of it) and the neighbours read with it. A fetch the cache answers holds nothing.
//
// Only a read's first piece waits for room, up to historyReadWait from the read's start,
// and before the cache is asked for it: a read then waits holding nothing, and never
// while other reads wait for a load it started. Its later pieces count without waiting,
// so that a read holding part of the budget never waits on reads holding the rest: the
// budget admits reads while it is under its limit, and an admitted read may take it past.
type readCharge struct {
	budget   *membudget.Budget
	deadline time.Time
	r        *membudget.Reservation // nil until the first piece is admitted
}

// charging returns a charge on budget for one read, to release once the read's answer is
// handed on. A nil budget (a history of a test's) charges nothing.
func charging(budget *membudget.Budget) *readCharge {
	return &readCharge{budget: budget, deadline: time.Now().Add(historyReadWait)}
}

// add charges n more bytes. A read that holds none yet waits for room if wait is set, up
// to its deadline, and otherwise only takes room there is.
func (c *readCharge) add(ctx context.Context, n int64, wait bool) error {
	if c == nil || c.budget == nil || n <= 0 {
		return nil
	}
	if c.r != nil {
		c.r.Grow(n)
		return nil
	}
	refused := func() error {
		return fmt.Errorf("the agent's reads from the store (--max-read-bytes %d) had no room for this one within %s of its start (%w)",
			c.budget.Limit(), historyReadWait, ErrBackpressure)
	}
	if !wait {
		r, ok := c.budget.TryReserve(n)
		if !ok {
			return refused()
		}
		c.r = r
		return nil
	}
	wctx, cancel := context.WithDeadline(ctx, c.deadline)
	defer cancel()
	r, err := c.budget.Reserve(wctx, n)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return refused()
	}
	c.r = r
	return nil
}

// release gives the read's bytes back. A charge is one read's, on one goroutine.
func (c *readCharge) release() { c.r.Release() }
