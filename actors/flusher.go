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

	seq      atomic.Int64
	mu       sync.Mutex
	pending  []flushItem
	inFlight int
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
	return &flusher{store: store, prefix: segmentstore.DataPrefix + node + "/" + start + "-", slots: slots, timeout: timeout}
}

// submit queues an encoded segment; done is called once, from another goroutine, with the
// object and offset it was written at, or the error that kept it from the store.
func (f *flusher) submit(data []byte, done func(object string, offset int64, err error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending = append(f.pending, flushItem{data, done})
	f.startLocked()
}

// startLocked starts a PUT of pending segments if a slot is free.
func (f *flusher) startLocked() {
	if f.inFlight >= f.slots || len(f.pending) == 0 {
		return
	}
	n, size := 0, 0
	for n < len(f.pending) && (n == 0 || size+len(f.pending[n].data) <= maxObjectBytes) {
		size += len(f.pending[n].data)
		n++
	}
	batch := f.pending[:n:n]
	f.pending = append([]flushItem(nil), f.pending[n:]...)
	f.inFlight++
	go f.put(batch)
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
