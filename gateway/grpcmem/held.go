package grpcmem

import (
	"context"
	"sync"

	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"

	"github.com/streamhouse/streamhouse/gateway/membudget"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// held maps a response about to be sent to the reservation of the read budget that
// accounts it: the codec that encodes the response resizes the reservation to the
// encoded size and gives it back once the transport has written the bytes to the client
// (or dropped them with its stream). A handler cannot see that moment: it returns the
// response, and gRPC encodes and queues it afterwards, where a client that reads slowly
// may keep it for as long as it does not grant flow-control window.
//
// Two kinds of end drop queued bytes without freeing their buffer (grpc-go v1.85): a
// connection that closes (what its streams had queued past the control buffer), and a
// stream reset (by its client, or its deadline) while its next message was being
// queued. The reservations of a connection are therefore also given back when it ends
// (statsHandler), those of a stream when its handler says it ended (HoldsOfStream), and
// those of any call when it ends without its trailers having been queued, which is how
// a reset shows (statsHandler.HandleRPC): a unary Fetch reset at that moment kept its
// answer's bytes until its connection ended, which for a long-lived client is never.
//
// Answers are never compressed (ServerOptions): gRPC frees the encoded buffer of one it
// compresses at once, and only the compressed copy waits to be written.
var held sync.Map // proto.Message -> *answer

// answer is a reservation held for one encoded response, and the sets it is in.
type answer struct {
	r      *membudget.Reservation
	conn   *holds // its connection's
	stream *holds // its stream's, if its handler keeps one
}

// release gives the answer's bytes back and drops it from its sets; a nil answer (a
// message no reservation holds) has none.
func (a *answer) release() {
	if a == nil {
		return
	}
	a.r.Release()
	a.conn.remove(a)
	a.stream.remove(a)
}

// HoldUntilWritten makes r account m, which its handler returns (or its stream sends)
// next, until m is written. ctx is the call's. Every message so registered must be sent:
// gRPC encodes a unary handler's response whenever the handler returns no error, and a
// stream's on Send; and the server must run with ServerOptions, whose codec and stats
// handler give r back.
func HoldUntilWritten(ctx context.Context, m proto.Message, r *membudget.Reservation) {
	if r == nil {
		return
	}
	// The answer names its sets before it joins them, so that an end that releases it
	// (and drops it from the other set) reads fields nothing writes any more; a set
	// that has ended does not take it, and dropping it from there does nothing.
	a := &answer{r: r}
	a.conn, _ = ctx.Value(connHoldsKey{}).(*holds)
	a.stream, _ = ctx.Value(streamHoldsKey{}).(*holds)
	a.conn.add(a)
	a.stream.add(a)
	held.Store(m, a)
}

// HoldsOfStream returns a context for a streaming handler's HoldUntilWritten calls and a
// func to call when the stream has ended because its client reset it or went away: the
// answers it had queued are dropped, and their reservations given back.
func HoldsOfStream(ctx context.Context) (context.Context, func()) {
	h := &holds{}
	return context.WithValue(ctx, streamHoldsKey{}, h), h.end
}

// heldBy takes the answer registered for m, if any.
func heldBy(m proto.Message) *answer {
	a, ok := held.LoadAndDelete(m)
	if !ok {
		return nil
	}
	return a.(*answer)
}

// releasingPool returns a buffer to pool and then releases a: given to mem.NewBuffer,
// it runs when the last reference to the buffer, the transport's once it has written it,
// is freed.
type releasingPool struct {
	mem.BufferPool
	a *answer
}

func (p releasingPool) Put(b *[]byte) {
	p.BufferPool.Put(b)
	p.a.release()
}

// holds is a set of reservations whose answers are not yet written, given back when
// what they belong to ends. A nil *holds is an empty set that stays empty.
type holds struct {
	mu       sync.Mutex
	set      map[*answer]struct{}
	ended    bool
	trailers bool // a call's: its trailers were queued, after everything it sent
}

type (
	connHoldsKey   struct{}
	streamHoldsKey struct{}
)

// add puts a in the set, unless it has ended.
func (h *holds) add(a *answer) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended {
		return
	}
	if h.set == nil {
		h.set = map[*answer]struct{}{}
	}
	h.set[a] = struct{}{}
}

func (h *holds) remove(a *answer) {
	if h == nil {
		return
	}
	h.mu.Lock()
	delete(h.set, a)
	h.mu.Unlock()
}

// end gives back every answer still in the set, and drops each from its other set too
// (a stream's answers are in their connection's, which may live much longer); what is
// added later is not kept.
func (h *holds) end() {
	h.mu.Lock()
	set := h.set
	h.set, h.ended = nil, true
	h.mu.Unlock()
	for a := range set {
		a.release()
	}
}

// statsHandler gives each connection a set of holds and ends it with the connection.
type statsHandler struct{}

func (statsHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, connHoldsKey{}, &holds{})
}

func (statsHandler) HandleConn(ctx context.Context, s stats.ConnStats) {
	if _, ok := s.(*stats.ConnEnd); ok {
		if h, ok := ctx.Value(connHoldsKey{}).(*holds); ok {
			h.end()
		}
	}
}

// TagRPC gives each unary Fetch, the one call whose answer a reservation holds, a set
// of holds (a stream's handler gives its own, HoldsOfStream); other calls, produce's
// among them, carry none.
func (statsHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if info.FullMethodName != pb.StreamHouse_Fetch_FullMethodName {
		return ctx
	}
	return context.WithValue(ctx, streamHoldsKey{}, &holds{})
}

// HandleRPC ends a call's set when the call ends without its trailers queued: its
// stream was reset, and an answer queued at that moment is dropped unfreed. Once the
// trailers are queued, every answer before them is written or freed with the stream,
// and gives its bytes back itself.
func (statsHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	h, ok := ctx.Value(streamHoldsKey{}).(*holds)
	if !ok {
		return
	}
	switch s.(type) {
	case *stats.OutTrailer:
		h.mu.Lock()
		h.trailers = true
		h.mu.Unlock()
	case *stats.End:
		h.mu.Lock()
		reset := !h.trailers
		h.mu.Unlock()
		if reset {
			h.end()
		}
	}
}
