package dev_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/tests/harness"
)

type benchSide struct {
	Records uint64 `json:"records"`
	Errors  uint64 `json:"errors"`
	Latency struct {
		P50 float64 `json:"p50"`
		P99 float64 `json:"p99"`
		Max float64 `json:"max"`
	} `json:"latency_ms"`
}

type benchReport struct {
	Partitions  int32      `json:"partitions"`
	Interrupted bool       `json:"interrupted"`
	Produce     *benchSide `json:"produce"`
	Consume     *benchSide `json:"consume"`
	EndToEnd    *struct {
		P99 float64 `json:"p99"`
	} `json:"e2e_latency_ms"`
}

func bench(t *testing.T, d *devCluster, args ...string) benchReport {
	t.Helper()
	out := d.must("", append([]string{"bench"}, append(args, "--json", "--progress", "0")...)...)
	var r benchReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench %v: %v\n%s", args, err, out)
	}
	return r
}

// streamctl bench produces, reads back exactly what was acked, and follows the log end;
// bad flags are refused before anything is created.
func TestStreamctlBench(t *testing.T) {
	d := startDev(t, t.TempDir())
	if out, err := d.run("", "bench", "produce", "--topic", "refused", "--record-size", "4"); err == nil || !strings.Contains(out, "--record-size 4") {
		t.Fatalf("a record too small for its stamp was accepted: %v\n%s", err, out)
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"produce", "--topic", "refused", "--rate", "NaN"}, "--rate NaN"},
		{[]string{"produce", "--topic", "refused", "--rate", "-1"}, "--rate -1"},
		{[]string{"produce", "--topic", "refused", "--progress", "-1s"}, "--progress -1s"},
		{[]string{"produce", "--topic", "refused", "--record-size", "1048576", "--batch", "100"}, "over streamctl's message limit"}, // 100 MiB requests
		{[]string{"consume", "--topic", "refused"}, "does not exist"},                                                               // consume reads an existing topic
	} {
		if out, err := d.run("", append([]string{"bench"}, bad.args...)...); err == nil || !strings.Contains(out, bad.want) {
			t.Fatalf("bench %v: %v, want an error saying %q\n%s", bad.args, err, bad.want, out)
		}
	}
	if out := d.must("", "topic", "list"); strings.Contains(out, "refused") {
		t.Fatalf("a refused bench created its topic:\n%s", out)
	}
	// Requests the server refuses, by its record limit (16 MiB) or gRPC's message limit
	// (17 MiB), stop the run at the first answer with the server's reason, rather than
	// fail for the whole minute.
	// One request at a time: each is 17–21 MB.
	for _, size := range []struct {
		args []string
		want string
	}{
		{[]string{"--batch", "17", "--record-size", "1000000"}, "InvalidArgument: request carries 17000000 bytes of records"},
		{[]string{"--batch", "20", "--record-size", "1048576"}, "ResourceExhausted: grpc: received message larger than max"},
	} {
		start := time.Now()
		out, err := d.run("", append([]string{"bench", "produce", "--topic", "big", "--duration", "60s", "--progress", "0", "--producers", "1", "--in-flight", "1"}, size.args...)...)
		if err == nil || !strings.Contains(out, "stopped at an error every request would meet: produce: "+size.want) || time.Since(start) > 30*time.Second {
			t.Fatalf("bench with requests over the server's limit %v: %v after %v\n%s", size.args, err, time.Since(start), out)
		}
		if !strings.Contains(out, "bench produce: topic big") {
			t.Fatalf("no report of the stopped run:\n%s", out)
		}
	}

	p := bench(t, d, "produce", "--topic", "b", "--partitions", "3", "--duration", "2s", "--record-size", "512")
	if p.Partitions != 3 || p.Produce == nil || p.Produce.Records == 0 || p.Produce.Errors != 0 {
		t.Fatalf("produce: %+v %+v", p, p.Produce)
	}
	if l := p.Produce.Latency; l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.Max {
		t.Fatalf("produce latency percentiles out of order: %+v", l)
	}
	c := bench(t, d, "consume", "--topic", "b", "--duration", "60s")
	if c.Consume == nil || c.Consume.Records != p.Produce.Records || c.Consume.Errors != 0 {
		t.Fatalf("catch-up read %+v records; %d were acked", c.Consume, p.Produce.Records)
	}
	e := bench(t, d, "e2e", "--topic", "b", "--rate", "200", "--batch", "1", "--duration", "2s")
	if e.Produce.Records == 0 || e.Produce.Errors != 0 || e.Consume.Errors != 0 || e.EndToEnd == nil || e.EndToEnd.P99 <= 0 {
		t.Fatalf("e2e: produce %+v consume %+v e2e %+v", e.Produce, e.Consume, e.EndToEnd)
	}
	// The consumers read on to where the producers left the log: every record acked is
	// delivered, once.
	if e.Consume.Records != e.Produce.Records {
		t.Fatalf("e2e: %d records delivered of %d acked", e.Consume.Records, e.Produce.Records)
	}

	// Once retention has removed the oldest segments, a catch-up reads from each
	// partition's log start: what is left, without an error. Segments and merges are kept
	// small, so that retention has segments to remove whenever the merges run.
	d.must("", "topic", "create", "kept", "--partitions", "3", "--segment-bytes", "65536", "--merge-bytes", "262144")
	if k := bench(t, d, "produce", "--topic", "kept", "--duration", "1s", "--record-size", "512"); k.Produce.Errors != 0 {
		t.Fatalf("produce: %+v", k.Produce)
	}
	d.must("", "topic", "alter", "kept", "--retention-bytes", "1000000")
	var left, before uint64
	harness.Eventually(t, time.Minute, func() error {
		before, left = left, 0
		removed := 0
		for _, l := range lines(d.must("", "topic", "describe", "kept")) {
			f := strings.Fields(l)
			if len(f) != 8 {
				continue // the topic's line and the table's head
			}
			start, err1 := strconv.ParseUint(f[4], 10, 64)
			hwm, err2 := strconv.ParseUint(f[5], 10, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			if start > 0 {
				removed++
			}
			left += hwm - start
		}
		if removed < 3 || left != before {
			return fmt.Errorf("retention has trimmed %d partitions of 3; %d records left, %d before", removed, left, before)
		}
		return nil
	})
	r := bench(t, d, "consume", "--topic", "kept", "--duration", "60s")
	if r.Consume == nil || r.Consume.Records != left || r.Consume.Errors != 0 {
		t.Fatalf("catch-up after retention read %+v; %d records are left", r.Consume, left)
	}
}

// Interrupted, streamctl bench prints what it measured so far and exits non-zero; the
// requests it cancelled are not counted as the server's errors.
func TestStreamctlBenchInterrupted(t *testing.T) {
	d := startDev(t, t.TempDir())
	cmd := exec.Command(d.ctl, "bench", "produce", "--topic", "ctrl-c", "--duration", "10m", "--progress", "100ms", "--json")
	cmd.Env = append(cmd.Environ(), "STREAMHOUSE_ADDR="+d.addr)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		// Interrupt once a progress line shows records acked.
		sc := bufio.NewScanner(stderr)
		interrupted := false
		for sc.Scan() {
			if !interrupted && strings.Contains(sc.Text(), "produce ") && !strings.Contains(sc.Text(), "produce 0 rec/s") {
				interrupted = true
				if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
					t.Error(err)
				}
			}
		}
		done <- cmd.Wait()
	}()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("bench did not stop on SIGINT; stdout:\n%s", stdout.String())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("interrupted bench: %v, want a non-zero exit", err)
	}
	var r benchReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("no report after the interrupt: %v\n%s", err, stdout.String())
	}
	if !r.Interrupted || r.Produce == nil || r.Produce.Records == 0 || r.Produce.Errors != 0 {
		t.Fatalf("interrupted report: %+v produce %+v", r, r.Produce)
	}
}
