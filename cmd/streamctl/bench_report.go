package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// benchReport is the result of one `streamctl bench` run; with --json it is printed as is.
type benchReport struct {
	Mode       string  `json:"mode"`
	Topic      string  `json:"topic"`
	Partitions int32   `json:"partitions"`
	RecordSize int     `json:"record_size"`
	Producers  int     `json:"producers,omitempty"`
	Consumers  int     `json:"consumers,omitempty"`
	Rate       float64 `json:"target_rate"` // records/s; 0: as fast as possible
	Batch      int     `json:"batch"`
	Seconds    float64 `json:"seconds"`
	// Interrupted: the run was stopped (Ctrl-C) before its end; the figures cover it until then.
	Interrupted bool `json:"interrupted,omitempty"`
	// StoppedBy: the error every request would have met, at which the run stopped
	// (side: code: message); the figures cover the run until then.
	StoppedBy string         `json:"stopped_by,omitempty"`
	Produce   *sideReport    `json:"produce,omitempty"`
	Consume   *sideReport    `json:"consume,omitempty"`
	EndToEnd  *latencyReport `json:"e2e_latency_ms,omitempty"`
}

// sideReport is what producers or consumers did.
type sideReport struct {
	Records       uint64        `json:"records"`
	Bytes         uint64        `json:"bytes"`
	Requests      uint64        `json:"requests"`
	Errors        uint64        `json:"errors"`
	FirstError    string        `json:"first_error,omitempty"`
	RecordsPerSec float64       `json:"records_per_sec"`
	MiBPerSec     float64       `json:"mib_per_sec"`
	Latency       latencyReport `json:"latency_ms"` // per record (produce), per fetch (consume)
}

// latencyReport holds percentiles in milliseconds.
type latencyReport struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func latencyOf(h *histogram) latencyReport {
	return latencyReport{P50: ms(h.quantile(0.5)), P90: ms(h.quantile(0.9)), P99: ms(h.quantile(0.99)),
		P999: ms(h.quantile(0.999)), Max: ms(h.max)}
}

func (m *meter) report(elapsed time.Duration) *sideReport {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := &sideReport{Records: m.records.Load(), Bytes: m.bytes.Load(), Requests: m.requests.Load(), Errors: m.errors.Load(),
		Latency: latencyOf(&m.latency)}
	if m.firstErr != nil {
		r.FirstError = m.firstErr.Error()
	}
	r.RecordsPerSec = float64(r.Records) / elapsed.Seconds()
	r.MiBPerSec = float64(r.Bytes) / (1 << 20) / elapsed.Seconds()
	return r
}

func (l latencyReport) String() string {
	return fmt.Sprintf("p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms", l.P50, l.P90, l.P99, l.P999, l.Max)
}

func (r *benchReport) print(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	rate := "max rate"
	if r.Rate > 0 {
		rate = fmt.Sprintf("%.0f records/s", r.Rate)
	}
	interrupted := ""
	switch {
	case r.StoppedBy != "":
		interrupted = " (stopped: " + r.StoppedBy + ")"
	case r.Interrupted:
		interrupted = " (interrupted)"
	}
	fmt.Fprintf(w, "bench %s: topic %s (%d partitions), %d-byte records, batch %d, %s, %.1fs%s\n",
		r.Mode, r.Topic, r.Partitions, r.RecordSize, r.Batch, rate, r.Seconds, interrupted)
	side := func(name string, workers int, s *sideReport, latency string) {
		if s == nil {
			return
		}
		fmt.Fprintf(w, "  %-8s %d workers: %d records (%.0f/s), %.1f MiB/s, %d requests, %d errors\n",
			name, workers, s.Records, s.RecordsPerSec, s.MiBPerSec, s.Requests, s.Errors)
		fmt.Fprintf(w, "  %-8s latency (%s): %s\n", "", latency, s.Latency)
		if s.FirstError != "" {
			fmt.Fprintf(w, "  %-8s first error: %s\n", "", s.FirstError)
		}
	}
	side("produce", r.Producers, r.Produce, "request → ack, per record")
	side("consume", r.Consumers, r.Consume, "per fetch")
	if r.EndToEnd != nil {
		fmt.Fprintf(w, "  %-8s latency (sent or due → delivered): %s\n", "e2e", *r.EndToEnd)
	}
	return nil
}

// startProgress prints a line every interval: records/s and MiB/s since the last line,
// p99 so far, errors. The returned func stops it.
func startProgress(interval time.Duration, w io.Writer, mode string, start time.Time, prod, cons *meter) func() {
	if interval <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(interval)
		defer t.Stop()
		last := map[*meter][2]uint64{}
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			var parts []string
			for _, s := range []struct {
				name string
				m    *meter
			}{{"produce", prod}, {"consume", cons}} {
				if s.m == nil {
					continue
				}
				recs, bytes := s.m.records.Load(), s.m.bytes.Load()
				prev := last[s.m]
				last[s.m] = [2]uint64{recs, bytes}
				s.m.mu.Lock()
				p99 := s.m.latency.quantile(0.99)
				s.m.mu.Unlock()
				parts = append(parts, fmt.Sprintf("%s %.0f rec/s %.1f MiB/s p99 %.1f ms errors %d", s.name,
					float64(recs-prev[0])/interval.Seconds(), float64(bytes-prev[1])/(1<<20)/interval.Seconds(),
					ms(p99), s.m.errors.Load()))
			}
			fmt.Fprintf(w, "[%s %5.1fs] %s\n", mode, time.Since(start).Seconds(), strings.Join(parts, " | "))
		}
	}()
	return func() { close(done); <-stopped }
}
