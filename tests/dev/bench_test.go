package dev_test

import (
	"encoding/json"
	"strings"
	"testing"
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
	Partitions int32      `json:"partitions"`
	Produce    *benchSide `json:"produce"`
	Consume    *benchSide `json:"consume"`
	EndToEnd   *struct {
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
	if out := d.must("", "topic", "list"); strings.Contains(out, "refused") {
		t.Fatalf("a refused bench created its topic:\n%s", out)
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
}
