package actors

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/streamhouse/streamhouse/gateway/membudget"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

// historyReadWait bounds how long a read waits for room in the agent's history read
// budget: its caller sends the fetch again after an attempt timeout (5 s by default,
// ClientOptions.AttemptTimeout), so a read queued longer serves nobody, and would wait
// ahead of the ones that do.
const historyReadWait = 5 * time.Second

// readCharge is what one fetch served from the store holds of the agent's history read
// budget: the bytes of the ranges it has got from the store (segments, footers,
// neighbours' spans), from its first GET until its answer is handed on, whether or not
// its caller still waits for it. A fetch the block cache answers holds nothing. The
// first GET waits for room; later ones of the same fetch grow its charge without
// waiting, so that a read holding part of the budget never waits on reads holding the
// rest.
type readCharge struct {
	budget *membudget.Budget

	mu    sync.Mutex
	r     *membudget.Reservation
	n     int64
	ended bool // released: a GET after that (none is expected) is not kept
}

type readChargeKey struct{}

// charging returns ctx carrying a new charge on budget for the GETs made under it, and
// the charge, to release once the read's answer is handed on.
func charging(ctx context.Context, budget *membudget.Budget) (context.Context, *readCharge) {
	c := &readCharge{budget: budget}
	return context.WithValue(ctx, readChargeKey{}, c), c
}

// add charges n more bytes to the read under ctx, if it carries a charge.
func add(ctx context.Context, n int64) error {
	c, ok := ctx.Value(readChargeKey{}).(*readCharge)
	if !ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return nil
	}
	if c.r != nil {
		c.n += n
		c.r.Resize(c.n)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, historyReadWait)
	defer cancel()
	r, err := c.budget.Reserve(wctx, n)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("the agent's reads from the store (--max-read-bytes %d) stayed spent for %s: %w",
			c.budget.Limit(), historyReadWait, err)
	}
	c.r, c.n = r, n
	return nil
}

// release gives the read's bytes back.
func (c *readCharge) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	c.r.Release()
}

// chargedStore is the store history reads go through: each range it gets is charged to
// the read whose context it comes with (charging). History reads get ranges only
// (GetRange, GetParts).
type chargedStore struct{ objstore.Store }

func (s chargedStore) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if err := add(ctx, n); err != nil {
		return nil, err
	}
	return s.Store.GetRange(ctx, key, off, n)
}

// GetParts keeps the store's one request for adjacent ranges (objstore.PartsGetter).
func (s chargedStore) GetParts(ctx context.Context, key string, off int64, sizes []int64) ([][]byte, error) {
	total := int64(0)
	for _, n := range sizes {
		total += n
	}
	if err := add(ctx, total); err != nil {
		return nil, err
	}
	return objstore.GetParts(ctx, s.Store, key, off, sizes)
}
