package dev_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestProduceSendsLinesAsTheyCome: `tail -f app.log | streamctl produce logs` (or a
// terminal) must see each line acked while its input stays open, not once 500 lines have
// come or the input ended; then the records are in the log, in order.
func TestProduceSendsLinesAsTheyCome(t *testing.T) {
	d := startDev(t, t.TempDir())
	d.must("", "topic", "create", "piped", "--partitions", "1")
	p := d.launch(t, "produce", "piped")
	for i := range 3 {
		if _, err := fmt.Fprintf(p.stdin, "line-%d\n", i); err != nil {
			t.Fatal(err)
		}
		if got, want := p.expect(t, 1)[0], fmt.Sprintf("piped/0@%d", i); got != want {
			t.Fatalf("line %d acked as %q, want %q", i, got, want)
		}
	}
	if err := p.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, "its input ended"); err != nil {
		t.Fatalf("streamctl produce after its input ended: %v; stderr: %s", err, p.stderr)
	}
	if a, more := <-p.lines; more {
		t.Fatalf("an ack after the input ended: %q", a)
	}
	got := lines(d.must("", "consume", "piped", "--from", "earliest", "--limit", "3"))
	if len(got) != 3 || !strings.HasSuffix(got[0], "line-0") || !strings.HasSuffix(got[2], "line-2") {
		t.Fatalf("consume: %q", got)
	}
}
