package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// lineBatcher reads lines of an input into batches for produce. The sender takes what has
// been read whenever it is free, so that an input that pauses (`tail -f`, a terminal) has
// each line sent as it comes, while a fast one fills the next batch, up to maxRecords
// lines or maxBytes, while the last is being sent. At most one batch waits: memory stays
// within two batches and a line.
type lineBatcher struct {
	maxRecords, maxBytes int
	// overhead is what each line's record carries besides the line (its key and headers),
	// counted against maxBytes.
	overhead int

	mu    sync.Mutex
	cond  *sync.Cond
	batch []string
	bytes int
	ended bool
	err   error // the input's, once ended
}

// newLineBatcher starts reading r, in lines of up to maxLine bytes.
func newLineBatcher(r io.Reader, maxLine, maxRecords, maxBytes, overhead int) *lineBatcher {
	b := &lineBatcher{maxRecords: maxRecords, maxBytes: maxBytes, overhead: overhead}
	b.cond = sync.NewCond(&b.mu)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, min(maxLine, 64<<10)), maxLine+1) // a line of maxLine and its newline
	go b.read(sc, maxLine)
	return b
}

// read runs until the input ends: a process reading its standard input cannot interrupt
// a read, and exits with it pending.
func (b *lineBatcher) read(sc *bufio.Scanner, maxLine int) {
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		b.mu.Lock()
		for len(b.batch) >= b.maxRecords || b.bytes >= b.maxBytes {
			b.cond.Wait()
		}
		b.batch = append(b.batch, line)
		b.bytes += len(line) + b.overhead
		b.cond.Broadcast()
		b.mu.Unlock()
	}
	err := sc.Err()
	if errors.Is(err, bufio.ErrTooLong) {
		err = fmt.Errorf("line %d is longer than %d bytes, the most a line may hold: %w", n+1, maxLine, err)
	}
	b.mu.Lock()
	b.ended, b.err = true, err
	b.cond.Broadcast()
	b.mu.Unlock()
}

// next returns the lines read since the last call, waiting for one if there are none
// until ctx ends (then with ctx's error). Once the input has ended and every line was
// returned, it returns no lines and the input's error (nil at its end).
func (b *lineBatcher) next(ctx context.Context) ([]string, error) {
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.batch) == 0 && !b.ended && ctx.Err() == nil {
		b.cond.Wait()
	}
	lines := b.batch
	b.batch, b.bytes = nil, 0
	b.cond.Broadcast()
	switch {
	case len(lines) > 0:
		return lines, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	return nil, b.err
}
