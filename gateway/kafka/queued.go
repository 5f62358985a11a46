package kafka

import (
	"time"

	"github.com/streamhouse/streamhouse/gateway/membudget"
)

// DefaultMaxQueuedBytes bounds the request frames an agent's Kafka listener holds over all
// its connections (Options.MaxQueuedBytes). It exceeds what one producer keeps in flight
// on its connection (MaxInFlightBytes), so that a single client is never held by it. 64
// MiB rather than 96: kgo's producer to 100 partitions peaked the agent at 495–515 MiB
// RSS with 96 (five runs), 480–497 with 64 (four), at a median 6% fewer records a second
// (docs/BENCHMARKS.md, profiling item 39).
const DefaultMaxQueuedBytes = 64 << 20

// DefaultFrameTimeout bounds how long a request frame takes to arrive once its size is
// read (Options.FrameTimeout): a frame of the default largest size at 2 MiB/s.
const DefaultFrameTimeout = 60 * time.Second

// DefaultIdleTimeout is Kafka's connections.max.idle.ms (Options.IdleTimeout). Clients
// keep their connections busy with metadata refreshes and fetches well within it.
const DefaultIdleTimeout = 10 * time.Minute

// MinQueuedBytes is the least MaxQueuedBytes an agent accepts: below a produce request's
// size, every frame would wait for all the others.
const MinQueuedBytes = 1 << 20

// newQueuedBytes returns the agent-wide budget of request frames read and not yet
// answered, as Kafka's queued.max.request.bytes: a connection whose next frame comes
// while the budget is spent reads no further until requests of any connection are
// answered, so that clients are slowed by TCP's flow control instead of the agent's
// memory growing with its connections (each of which may pipeline MaxInFlightBytes of
// produce requests, and send frames of up to MaxFrameBytes). It counts frames as they
// come, before a produce's records are decompressed, and admits them in the order they
// came once they fit (a frame larger than the whole budget alone): Kafka's pool admits
// a frame whenever some budget is left, which let a listener hold 168 MiB of frames with
// 96 MiB of budget when kgo sent requests of ~1 MB for each of 100 partitions
// (docs/BENCHMARKS.md, profiling item 31).
func newQueuedBytes(limit int64) *membudget.Budget {
	return membudget.New(limit, membudget.Metrics{Held: metricQueuedBytes, Waits: metricQueuedWaits})
}
