package dev_test

import (
	"bufio"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestProduceSendsLinesAsTheyCome: `tail -f app.log | streamctl produce logs` (or a
// terminal) must see each line acked while its input stays open, not once 500 lines have
// come or the input ended; then the records are in the log, in order.
func TestProduceSendsLinesAsTheyCome(t *testing.T) {
	d := startDev(t, t.TempDir())
	d.must("", "topic", "create", "piped", "--partitions", "1")
	cmd := exec.Command(d.ctl, "produce", "piped")
	cmd.Env = append(cmd.Environ(), "STREAMHOUSE_ADDR="+d.addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }() // only if the test failed first
	acks := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			acks <- sc.Text()
		}
		close(acks)
	}()
	for i := range 3 {
		if _, err := fmt.Fprintf(stdin, "line-%d\n", i); err != nil {
			t.Fatal(err)
		}
		select {
		case a := <-acks:
			if want := fmt.Sprintf("piped/0@%d", i); a != want {
				t.Fatalf("line %d acked as %q, want %q", i, a, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("line %d not acked 10 s after it was written, the input still open; stderr: %s", i, stderr.String())
		}
	}
	if err := stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("streamctl produce after its input ended: %v; stderr: %s", err, stderr.String())
	}
	if a, more := <-acks; more {
		t.Fatalf("an ack after the input ended: %q", a)
	}
	got := lines(d.must("", "consume", "piped", "--from", "earliest", "--limit", "3"))
	if len(got) != 3 || !strings.HasSuffix(got[0], "line-0") || !strings.HasSuffix(got[2], "line-2") {
		t.Fatalf("consume: %q", got)
	}
}
