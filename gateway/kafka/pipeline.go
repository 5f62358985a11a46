package kafka

import (
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway/membudget"
)

// Kafka clients keep up to 5 produce requests in flight on a connection (an idempotent
// producer's limit), and a Kafka broker, which answers each as soon as it is in its log,
// serves them one after the other. Here a produce is answered once its records are in
// the object store and committed in etcd (a linger, a PUT, a transaction: tens of
// milliseconds), so one at a time would hold a producer's connection to one request per
// commit. An idempotent producer's requests are therefore served concurrently: each
// partition checks its batches' sequence numbers, and a batch that reaches its partition
// ahead of the one before it is refused by the partition and sent again after it
// (writeJob), so that the partition's log keeps the producer's order.

// pipeline is a connection's responses in request order and the produce requests it
// serves concurrently. Only serveConn's goroutine calls its methods; a goroutine of its
// own writes the responses.
type pipeline struct {
	conn     net.Conn
	replies  chan *reply   // every request's, in order, to the writer
	wrote    chan struct{} // closed when the writer has stopped
	maxReqs  int
	maxBytes int
	flying   []flight // the requests being served concurrently, oldest first, until landed
	bytes    int      // their frames'
	// last is, for each partition and producer (and epoch), the latest such job of a
	// request in flying: a connection may carry several producers' batches (a proxy's).
	last map[lane]*produceJob
}

// lane is a producer's (and epoch's) batches to one partition: each follows the one before.
type lane struct {
	p        coordination.Partition
	producer int64
	epoch    int32
}

// reply is one response's place in the connection's order: done is closed once out, the
// encoded response (empty: none is due), is set.
type reply struct {
	done chan struct{}
	out  []byte
	hold *membudget.Reservation // the read budget's bytes out holds until written
}

type flight struct {
	done  <-chan struct{}
	bytes int
}

// newPipeline serves c's responses, with at most maxReqs produce requests served at once
// and maxBytes of their frames (a larger frame is served once those before it are done).
func newPipeline(c net.Conn, maxReqs, maxBytes int) *pipeline {
	pl := &pipeline{conn: c, replies: make(chan *reply, maxReqs+1), wrote: make(chan struct{}),
		maxReqs: maxReqs, maxBytes: maxBytes, last: map[lane]*produceJob{}}
	go pl.write()
	return pl
}

// next takes the place of the next response. It blocks while the client is not reading
// the responses before it.
func (pl *pipeline) next() *reply {
	r := &reply{done: make(chan struct{})}
	pl.replies <- r
	return r
}

// answer encodes the response to h into its place (none for a request that takes none,
// UNSUPPORTED_VERSION for a nil response) and lets the writer send it.
func (pl *pipeline) answer(r *reply, h header, req *request, resp kmsg.Response) {
	switch {
	case req != nil && req.noResponse:
	case resp == nil:
		r.out = appendUnsupported(nil, h.correlation)
	default:
		r.out = appendResponse(nil, h.correlation, resp)
	}
	if req != nil {
		r.hold = req.hold // nil but for a fetch
		r.hold.Resize(int64(len(r.out)))
	}
	close(r.done)
}

// admit makes room for a produce request served alongside those in flight: it waits
// while there are maxReqs of them or their frames and this one's exceed maxBytes. Each of
// the request's jobs then follows the connection's previous job to its partition, if
// that one is not answered yet.
func (pl *pipeline) admit(r *reply, bytes int, pc *produceCall) {
	for len(pl.flying) > 0 && (len(pl.flying) >= pl.maxReqs || pl.bytes+bytes > pl.maxBytes) {
		pl.land()
	}
	pl.flying = append(pl.flying, flight{done: r.done, bytes: bytes})
	pl.bytes += bytes
	for _, j := range pc.jobs {
		first := j.requests[0]
		j.producer, j.epoch = first.ProducerId, first.ProducerEpoch
		key := lane{p: j.p, producer: j.producer, epoch: j.epoch}
		if prev := pl.last[key]; prev != nil && !answered(prev) {
			j.prev = prev
			first.Follows = true
		}
		j.done = make(chan struct{})
		pl.last[key] = j
	}
}

func answered(j *produceJob) bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// land waits for the oldest request in flight to be answered.
func (pl *pipeline) land() {
	<-pl.flying[0].done
	pl.bytes -= pl.flying[0].bytes
	pl.flying = pl.flying[1:]
	for key, j := range pl.last { // what a new job would not follow: let it go
		if answered(j) {
			delete(pl.last, key)
		}
	}
}

// drain waits until every request in flight is answered: what follows is served alone,
// after them.
func (pl *pipeline) drain() {
	for len(pl.flying) > 0 {
		pl.land()
	}
}

// writeTimeout bounds the write of one response: a client that reads no further for
// this long loses its connection, and the read budget its answers hold comes back.
const writeTimeout = 30 * time.Second

// write sends the responses in order, each once it is ready. After a failed write it
// closes the connection, which stops its reader, and goes on taking the responses so that
// nothing waits on it.
func (pl *pipeline) write() {
	defer close(pl.wrote)
	failed := false
	for r := range pl.replies {
		<-r.done
		if !failed && len(r.out) > 0 {
			_ = pl.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := pl.conn.Write(r.out); err != nil {
				failed = true
				_ = pl.conn.Close()
			}
		}
		r.hold.Release()
	}
}

// close waits for the requests in flight, sends their responses and stops the writer.
func (pl *pipeline) close() {
	close(pl.replies)
	<-pl.wrote
}
