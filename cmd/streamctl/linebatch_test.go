package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/tests/harness"
)

// nextWithin is next, failing the test if it blocks for a second.
func nextWithin(t *testing.T, b *lineBatcher, ctx ...context.Context) ([]string, error) {
	t.Helper()
	type result struct {
		lines []string
		err   error
	}
	got := make(chan result, 1)
	go func() {
		c := context.Background()
		if len(ctx) > 0 {
			c = ctx[0]
		}
		lines, err := b.next(c)
		got <- result{lines, err}
	}()
	select {
	case r := <-got:
		return r.lines, r.err
	case <-time.After(time.Second):
		t.Fatal("next is still waiting after a second")
		return nil, nil
	}
}

func TestLineBatcherHandsOverWhatCameWhileTheInputPauses(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	b := newLineBatcher(r, 1<<10, 500, 1<<20, 0)
	for i := range 3 {
		fmt.Fprintf(w, "line-%d\n", i) // returns once the batcher has read it
		lines, err := nextWithin(t, b)
		if err != nil || len(lines) != 1 || lines[0] != fmt.Sprintf("line-%d", i) {
			t.Fatalf("after line %d: %q, %v", i, lines, err)
		}
	}
}

func TestLineBatcherBoundsABatch(t *testing.T) {
	var in strings.Builder
	for i := range 1200 {
		fmt.Fprintf(&in, "%04d\n", i)
	}
	// Lines of 4 bytes and 6 of key and headers: 10 bytes each, so 30 bytes is 3 lines.
	for _, c := range []struct {
		name                 string
		maxRecords, maxBytes int
		want                 int
	}{{"records", 500, 1 << 20, 500}, {"bytes", 500, 30, 3}} {
		t.Run(c.name, func(t *testing.T) {
			b := newLineBatcher(strings.NewReader(in.String()), 1<<10, c.maxRecords, c.maxBytes, 6)
			// It reads until the waiting batch is full, and stops there.
			harness.Eventually(t, 5*time.Second, func() error {
				b.mu.Lock()
				defer b.mu.Unlock()
				if n := len(b.batch); n != c.want {
					return fmt.Errorf("the waiting batch holds %d lines, want %d", n, c.want)
				}
				return nil
			})
			next := 0
			for {
				lines, err := nextWithin(t, b)
				if err != nil {
					t.Fatal(err)
				}
				if len(lines) == 0 {
					break
				}
				if len(lines) > c.want {
					t.Fatalf("a batch of %d lines, at most %d", len(lines), c.want)
				}
				for _, l := range lines {
					if l != fmt.Sprintf("%04d", next) {
						t.Fatalf("line %q where %04d was due", l, next)
					}
					next++
				}
			}
			if next != 1200 {
				t.Fatalf("%d lines, want 1200", next)
			}
		})
	}
}

type failingReader struct {
	r   io.Reader
	err error
}

func (f failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		err = f.err
	}
	return n, err
}

func TestLineBatcherReportsTheInputsError(t *testing.T) {
	broken := errors.New("input broke")
	b := newLineBatcher(failingReader{strings.NewReader("a\nb\n"), broken}, 1<<10, 500, 1<<20, 0)
	var got []string
	for {
		lines, err := nextWithin(t, b)
		if err != nil {
			if !errors.Is(err, broken) || strings.Join(got, ",") != "a,b" {
				t.Fatalf("error %v after lines %q", err, got)
			}
			break
		}
		if len(lines) == 0 {
			t.Fatalf("the input ended without its error, after %q", got)
		}
		got = append(got, lines...)
	}

	b = newLineBatcher(strings.NewReader(strings.Repeat("x", 1024)+"\n"), 1<<10, 500, 1<<20, 0)
	if lines, err := nextWithin(t, b); err != nil || len(lines) != 1 || len(lines[0]) != 1024 {
		t.Fatalf("a line of the limit's length: %d lines, %v", len(lines), err)
	}

	b = newLineBatcher(strings.NewReader("short\n"+strings.Repeat("x", 1025)+"\n"), 1<<10, 500, 1<<20, 0)
	lines, err := nextWithin(t, b)
	if err == nil && len(lines) == 1 {
		lines, err = nextWithin(t, b)
	}
	if !errors.Is(err, bufio.ErrTooLong) || len(lines) != 0 || !strings.Contains(err.Error(), "line 2 is longer than 1024 bytes") {
		t.Fatalf("a line over the limit: %q, %v", lines, err)
	}
}

func TestLineBatcherWaitEndsWithItsContext(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	b := newLineBatcher(r, 1<<10, 500, 1<<20, 0)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if lines, err := nextWithin(t, b, ctx); !errors.Is(err, context.Canceled) || len(lines) != 0 {
		t.Fatalf("an interrupted wait for input: %q, %v", lines, err)
	}
}
