package gateway

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/gateway/membudget"
)

// DefaultMaxReadBytes is the default read budget of an agent (--max-read-bytes): the
// answers to fetches, gRPC and Kafka, from before their read until they are written to
// their clients. Sixteen default fetches of 1 MiB fit four times over; a fetch larger
// than the whole budget (up to MaxFetchBytes) goes in alone, once it is empty.
const DefaultMaxReadBytes = 64 << 20

// MinReadBytes is the least read budget an agent accepts.
const MinReadBytes = 1 << 20

// readWait bounds how long a gRPC fetch waits for the read budget: the budget stays
// spent only while clients leave their answers unread, and a client should learn that
// (ResourceExhausted) rather than hang. (A Kafka fetch waits no longer than its max wait.)
const readWait = 10 * time.Second

// NewReadBudget returns an agent's read budget of limit bytes (0: DefaultMaxReadBytes),
// for its gRPC and Kafka listeners to share.
func NewReadBudget(limit int) *membudget.Budget {
	if limit <= 0 {
		limit = DefaultMaxReadBytes
	}
	return membudget.New(int64(limit), membudget.Metrics{Waits: metricReadWaits})
}

// reserveRead reserves n bytes of the read budget for a fetch, waiting up to readWait;
// its error is the fetch's answer.
func (s *Server) reserveRead(ctx context.Context, n int) (*membudget.Reservation, error) {
	wctx, cancel := context.WithTimeout(ctx, readWait)
	defer cancel()
	r, err := s.reads.Reserve(wctx, int64(n))
	switch {
	case err == nil:
		return r, nil
	case ctx.Err() != nil:
		return nil, statusOf(ctx.Err())
	}
	return nil, status.Errorf(codes.ResourceExhausted,
		"the agent's read budget (--max-read-bytes %d) stayed spent for %s by answers its clients have not yet taken; retry",
		s.reads.Limit(), readWait)
}
