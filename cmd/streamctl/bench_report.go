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
	// Undelivered (e2e): records before the log's end when the producers were done (every
	// record acked, and any a failed request wrote all the same) that the consumers had not
	// read within drainTimeout after; their latency is in no percentile. Counted from the
	// offsets each consumer reached, not from the records acked and read: reads of records
	// no producer was acked for would hide as many acked ones.
	Undelivered uint64 `json:"undelivered,omitempty"`
	// EndUnknown (e2e): why the log's end after the producers' could not be read, and so
	// what was undelivered not counted.
	EndUnknown string `json:"end_unknown,omitempty"`
	// Failure is why the run exits non-zero (failure), for scripts that read the report.
	Failure string `json:"failure,omitempty"`
}

// maxBehind is how far behind its schedule a fixed-rate run may end before it counts as
// not having kept its rate. Not zero: on a busy machine a producer may wake late just as
// the run ends, and the few records it had yet to send say nothing of the cluster. A
// cluster slower than the rate leaves a backlog that grows with the run, far past it.
const maxBehind = time.Second

// failure is why a run that printed its report exits non-zero, or nil: it was stopped
// or interrupted, or its figures do not cover the load it was asked for.
func (r *benchReport) failure() error {
	switch {
	case r.StoppedBy != "":
		return fmt.Errorf("stopped at an error every request would meet: %s", r.StoppedBy)
	case r.Interrupted:
		return fmt.Errorf("interrupted after %.1fs: the report covers the run until then", r.Seconds)
	case r.Produce != nil && r.Produce.Records == 0:
		return fmt.Errorf("no record was acked (%d requests failed)", r.Produce.Errors)
	case r.Produce != nil && r.Produce.BehindMs > float64(maxBehind.Milliseconds()):
		return fmt.Errorf("the rate was not kept: the producers ended %.0f ms behind their schedule, with %d records due and not sent (the cluster or this client went slower than --rate %.0f); their latency is in no percentile",
			r.Produce.BehindMs, r.Produce.Unsent, r.Rate)
	case r.EndUnknown != "":
		return fmt.Errorf("the log's end after the producers' could not be read (%s): the records not delivered are not counted", r.EndUnknown)
	case r.Undelivered > 0:
		return fmt.Errorf("%d records written by the producers' end (every acked one among them) were not delivered to the consumers within %v after, and their latency is in no percentile",
			r.Undelivered, drainTimeout)
	case r.Rate > 0 && r.Produce != nil && r.Produce.Errors > 0:
		// At a fixed rate the latency is the figure: a failed request's records would
		// be its slowest, and are in no percentile.
		return fmt.Errorf("%d produce requests failed (the first: %s): at a fixed rate their records' latency is in no percentile", r.Produce.Errors, r.Produce.FirstError)
	}
	return nil
}

// sideReport is what producers or consumers did.
type sideReport struct {
	Records    uint64 `json:"records"`
	Bytes      uint64 `json:"bytes"`
	Requests   uint64 `json:"requests"`
	Errors     uint64 `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// Unsent (produce at a fixed rate): records that fell due before the end and were not
	// sent (the producers' requests outstanding were at their bound, or this client was
	// slow), and BehindMs how far the furthest producer was behind its schedule then.
	Unsent   uint64  `json:"unsent,omitempty"`
	BehindMs float64 `json:"behind_ms,omitempty"`
	// Unread (a catch-up): records before the high-water mark seen at the start that
	// --duration left unread.
	Unread        uint64        `json:"unread,omitempty"`
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
	r.Unsent, r.BehindMs = m.unsent.Load(), ms(m.behind)
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
		if s.Unsent > 0 {
			fmt.Fprintf(w, "  %-8s behind the rate: %d records fell due and were not sent, %.0f ms behind at the end\n", "", s.Unsent, s.BehindMs)
		}
		if s.Unread > 0 {
			fmt.Fprintf(w, "  %-8s %d records left unread at the end of --duration\n", "", s.Unread)
		}
	}
	produceLatency := "request sent → ack, per record"
	if r.Rate > 0 {
		produceLatency = "request due → ack, per record"
	}
	side("produce", r.Producers, r.Produce, produceLatency)
	side("consume", r.Consumers, r.Consume, "per fetch")
	if r.EndToEnd != nil {
		fmt.Fprintf(w, "  %-8s latency (sent or due → delivered): %s\n", "e2e", *r.EndToEnd)
	}
	if r.Undelivered > 0 {
		fmt.Fprintf(w, "  %-8s %d records written by the producers' end not delivered within %v after\n", "e2e", r.Undelivered, drainTimeout)
	}
	if r.EndUnknown != "" {
		fmt.Fprintf(w, "  %-8s the log's end after the producers' could not be read (%s): undelivered records not counted\n", "e2e", r.EndUnknown)
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
		lastAt := start
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			// The ticker drops ticks a busy machine makes late: the rates divide by the
			// time since the last line, not by the interval.
			now := time.Now()
			secs := now.Sub(lastAt).Seconds()
			lastAt = now
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
					float64(recs-prev[0])/secs, float64(bytes-prev[1])/(1<<20)/secs,
					ms(p99), s.m.errors.Load()))
			}
			fmt.Fprintf(w, "[%s %5.1fs] %s\n", mode, now.Sub(start).Seconds(), strings.Join(parts, " | "))
		}
	}()
	return func() { close(done); <-stopped }
}
