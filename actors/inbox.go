package actors

import "sync"

// inbox carries the results of a partition's background work (uploads, commits, linger
// timers) back to the goroutine that owns the partition's state. Posting never blocks, so
// an I/O goroutine never waits on the actor; the owner drains the inbox when signalled.
type inbox struct {
	mu     sync.Mutex
	items  []any
	signal chan struct{} // has a value while items is not empty
	notify func()        // optional: also wake the actor (a message to its mailbox)
}

func newInbox(notify func()) *inbox {
	return &inbox{signal: make(chan struct{}, 1), notify: notify}
}

func (in *inbox) post(v any) {
	in.mu.Lock()
	in.items = append(in.items, v)
	in.mu.Unlock()
	select {
	case in.signal <- struct{}{}:
	default:
	}
	if in.notify != nil {
		in.notify()
	}
}

func (in *inbox) take() []any {
	in.mu.Lock()
	defer in.mu.Unlock()
	items := in.items
	in.items = nil
	return items
}
