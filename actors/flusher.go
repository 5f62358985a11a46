package actors

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamhouse/streamhouse/segmentstore"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

// maxObjectBytes bounds one object: a flush takes pending segments up to this size (at
// least one), the rest wait for the next.
const maxObjectBytes = 16 << 20

// overlapAfter is how long the youngest PUT in flight runs before the flusher starts
// another (up to its slots), unless overlapBytes wait before that. A quick PUT leaves the segments that arrive meanwhile to
// gather into the next, larger object: fewer objects and, with partitions' segments
// waiting longer, fewer and larger segments, hence fewer etcd writes. A slow one does not
// hold them back for longer than this. Measured against starting every free slot at
// once (docs/BENCHMARKS.md, profiling item 16): more records a second at max rate and a
// lower p99 at 1000 records/s.
const overlapAfter = 50 * time.Millisecond

// overlapBytes is how much the waiting segments weigh when the flusher starts another
// PUT without waiting for overlapAfter: they already make an object whose PUT costs the
// store little beyond its bytes, so that holding them back would only add latency. At
// the maximum rate this keeps the slots busy, while at low rates, where segments are a
// few KiB, objects still gather as overlapAfter lets them. Measured against 1 and 4 MiB
// and against no such start (docs/BENCHMARKS.md, profiling item 27): 7% more records a
// second than without, with objects of 2.7 MB instead of 3.1 (1 MiB: 2.2 MB, no faster).
const overlapBytes = 2 << 20

// flusher writes the segments of every partition of an agent to the object store, many
// in one object (DESIGN.md §5, docs/BENCHMARKS.md). Segments submitted while every PUT slot
// is busy are concatenated into the next object: group commit, so that PUTs per second
// are bounded by the agent's slots and the store's latency rather than growing with the
// partition count, and objects grow with the load. Each segment is then indexed by its
// partition on its own (object, offset, length), fenced on that partition's epoch.
type flusher struct {
	store   objstore.Store
	prefix  string // data/<node>/ or the like: object names never repeat
	slots   int
	timeout time.Duration
	overlap time.Duration // overlapAfter; tests lengthen it
	// overlapBytes: the pending bytes that start another PUT at once; tests change it
	overlapBytes int

	seq          atomic.Int64
	mu           sync.Mutex
	pending      []flushItem
	pendingBytes int // bytes of pending
	inFlight     int
	lastStart    time.Time // of the last PUT started
	waking       bool      // a timer will call startLocked when overlapAfter has passed
}

// flushers counts the flushers of this process, for unique object names.
var flushers atomic.Int64

// flushItem is one encoded segment and whom to tell where it landed.
type flushItem struct {
	data []byte
	done func(object string, offset int64, err error)
}

// newFlusher returns a flusher writing objects data/<node>/<start>-<seq>.obj with up to
// slots PUTs at a time (default DefaultMaxUploads), each bounded by timeout (default DefaultUploadTimeout).
func newFlusher(store objstore.Store, node string, slots int, timeout time.Duration) *flusher {
	if slots <= 0 {
		slots = DefaultMaxUploads
	}
	if timeout <= 0 {
		timeout = DefaultUploadTimeout
	}
	// The start time tells this process's objects from an earlier run's of the same node;
	// the counter tells apart the flushers of one process (tests run several).
	start := strconv.FormatInt(time.Now().UnixNano(), 36)
	if n := flushers.Add(1); n > 1 {
		start += "." + strconv.FormatInt(n, 10)
	}
	return &flusher{store: store, prefix: segmentstore.DataPrefix + node + "/" + start + "-", slots: slots, timeout: timeout, overlap: overlapAfter, overlapBytes: overlapBytes}
}

// submit queues an encoded segment; done is called once, from another goroutine, with the
// object and offset it was written at, or the error that kept it from the store.
func (f *flusher) submit(data []byte, done func(object string, offset int64, err error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending = append(f.pending, flushItem{data, done})
	f.pendingBytes += len(data)
	f.startLocked()
}

// startLocked starts a PUT of pending segments if a slot is free and either no PUT is
// in flight, or the last one started overlap ago, or the pending segments weigh
// overlapBytes.
func (f *flusher) startLocked() {
	if f.inFlight >= f.slots || len(f.pending) == 0 {
		return
	}
	if f.inFlight > 0 && f.pendingBytes < f.overlapBytes {
		if wait := f.overlap - time.Since(f.lastStart); wait > 0 {
			if !f.waking {
				f.waking = true
				time.AfterFunc(wait, f.wake)
			}
			return
		}
	}
	n, size := 0, 0
	for n < len(f.pending) && (n == 0 || size+len(f.pending[n].data) <= maxObjectBytes) {
		size += len(f.pending[n].data)
		n++
	}
	batch := f.pending[:n:n]
	f.pending = append([]flushItem(nil), f.pending[n:]...)
	f.pendingBytes -= size
	f.inFlight++
	f.lastStart = time.Now()
	goroutines.Go(func() { f.put(batch) })
}

// wake is the timer of startLocked: the youngest PUT has run overlapAfter.
func (f *flusher) wake() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waking = false
	f.startLocked()
}

// nextName returns an object name no earlier object of this agent has.
func (f *flusher) nextName() string { return f.prefix + fmt.Sprintf("%010d.obj", f.seq.Add(1)) }

func (f *flusher) put(items []flushItem) {
	key := f.nextName()
	// The segments are the object's parts: written one after the other, not copied
	// into one buffer first.
	parts := make([][]byte, len(items))
	for i, it := range items {
		parts[i] = it.data
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	err := f.store.Put(ctx, key, parts...)
	cancel()
	if err == nil {
		metricObjects.Inc()
		metricObjectSegments.Observe(float64(len(items)))
	}
	f.mu.Lock()
	f.inFlight--
	f.startLocked()
	f.mu.Unlock()
	off := int64(0)
	for _, it := range items {
		it.done(key, off, err)
		off += int64(len(it.data))
	}
}
