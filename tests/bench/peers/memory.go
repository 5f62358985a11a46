package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// memorySample is where the agent's memory was at one instant: its resident set, the Go
// runtime's view of it, and what each of its budgets held.
type memorySample struct {
	At       float64            `json:"seconds"` // since the sampling started
	RSSMiB   float64            `json:"rss_mib"`
	HeapMiB  float64            `json:"heap_inuse_mib"`    // spans holding objects
	LiveMiB  float64            `json:"heap_live_mib"`     // what the last GC found live
	FreeMiB  float64            `json:"heap_free_mib"`     // idle spans not yet given back to the OS
	StackMiB float64            `json:"stack_inuse_mib"`   //
	GoalMiB  float64            `json:"next_gc_mib"`       // the heap size the next GC aims at
	Budgets  map[string]float64 `json:"budgets_used_mib"`  // streamhouse_memory_used_bytes
	Limits   map[string]float64 `json:"budgets_limit_mib"` // streamhouse_memory_limit_bytes
}

// sampleMemory samples the agent every interval until stop is closed, and returns the
// samples with the largest resident set and with the largest live heap.
func sampleMemory(pid int, metricsURL string, interval time.Duration, stop <-chan struct{}) (peakRSS, peakLive memorySample, err error) {
	start := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return peakRSS, peakLive, nil
		case <-t.C:
		}
		rss, err := procStatusMiB(pid, "VmRSS")
		if err != nil {
			return peakRSS, peakLive, err
		}
		s, err := scrape(metricsURL)
		if err != nil {
			return peakRSS, peakLive, err
		}
		m := memorySample{At: time.Since(start).Seconds(), RSSMiB: rss,
			HeapMiB:  mib(s.sum("go_memstats_heap_inuse_bytes")),
			LiveMiB:  mib(s.sum("go_gc_heap_live_bytes")),
			FreeMiB:  mib(s.sum("go_memstats_heap_idle_bytes") - s.sum("go_memstats_heap_released_bytes")),
			StackMiB: mib(s.sum("go_memstats_stack_inuse_bytes")),
			GoalMiB:  mib(s.sum("go_memstats_next_gc_bytes")),
			Budgets:  map[string]float64{}, Limits: map[string]float64{}}
		for _, b := range budgetNames {
			m.Budgets[b] = mib(s.sum("streamhouse_memory_used_bytes", "budget", b))
			m.Limits[b] = mib(s.sum("streamhouse_memory_limit_bytes", "budget", b))
		}
		if m.RSSMiB > peakRSS.RSSMiB {
			peakRSS = m
		}
		if m.LiveMiB > peakLive.LiveMiB {
			peakLive = m
		}
	}
}

// budgetNames are the agent's memory budgets, as streamhouse_memory_used_bytes labels them.
var budgetNames = []string{"pending", "recent", "cache", "read"}

func mib(b float64) float64 { return b / (1 << 20) }

// procStatusMiB reads one of the kB fields of /proc/<pid>/status (VmRSS, VmHWM), in MiB.
func procStatusMiB(pid int, field string) (float64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(field + `:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
	}
	kb, _ := strconv.ParseFloat(string(m[1]), 64)
	return kb / 1024, nil
}

// printMemory prints where the agent's memory was at its largest resident set and at
// its largest live heap of a phase.
func printMemory(w io.Writer, phase string, peaks [2]memorySample) {
	for i, s := range peaks {
		fmt.Fprintf(w, "agent memory at its largest %s of the %s (%.0f s in): RSS %.0f MiB = Go heap in use %.0f + free heap not returned %.0f + stacks %.0f + the rest %.0f; GC goal %.0f MiB\n",
			[]string{"RSS", "live heap"}[i], phase, s.At, s.RSSMiB, s.HeapMiB, s.FreeMiB, s.StackMiB, s.RSSMiB-s.HeapMiB-s.FreeMiB-s.StackMiB, s.GoalMiB)
		budgets, beyond := "", s.LiveMiB
		for _, b := range budgetNames {
			budgets += fmt.Sprintf(", %s %.0f / %.0f", b, s.Budgets[b], s.Limits[b])
			beyond -= s.Budgets[b]
		}
		fmt.Fprintf(w, "  budgets then (used / limit, MiB)%s; live heap at the last GC %.0f, of which beyond the budgets %.0f\n",
			budgets[1:], s.LiveMiB, beyond)
	}
}

// Phases whose memory is sampled, as printMemory names them.
const (
	widePhaseName      = "100-partition phase"
	kafkaWidePhaseName = "100-partition phase over Kafka"
)

// sampledPhase runs produce, then waits for the merges it caused, sampling the agent's
// memory throughout; it returns the samples of the largest resident set and live heap,
// and the agent's peak resident set since the phase started.
func (ph phases) sampledPhase(pid int, produce func() error) (peaks [2]memorySample, peak float64, err error) {
	// Linux's high-water mark of the resident set counts from here, not from the phases
	// before.
	if err := os.WriteFile(filepath.Join("/proc", strconv.Itoa(pid), "clear_refs"), []byte("5"), 0); err != nil {
		return peaks, 0, fmt.Errorf("reset the agent's peak RSS: %w", err)
	}
	stop := make(chan struct{})
	sampled := make(chan error, 1)
	go func() {
		var err error
		peaks[0], peaks[1], err = sampleMemory(pid, ph.metricsURL, 500*time.Millisecond, stop)
		sampled <- err
	}()
	err = produce()
	if err == nil {
		_, _, err = settle(ph.ctx, ph.metricsURL, *ph.lastWrite)
	}
	close(stop)
	if serr := <-sampled; err == nil {
		err = serr
	}
	if err != nil {
		return peaks, 0, err
	}
	peak, err = peakRSS(pid)
	return peaks, peak, err
}

// widePhase produces at max rate to 100 partitions, sampling the agent's memory, and
// records its peak resident set once the merges the phase caused are done.
func (ph phases) widePhase(res *results, pid int) (err error) {
	res.WideMemory, res.RSSMiB["100_partitions_max_rate"], err = ph.sampledPhase(pid, func() error {
		var err error
		res.Wide, err = ph.bench(append([]string{"produce", "--topic", "wide", "--partitions", "100", "--record-size", "1024", "--producers", "8", "--duration", ph.duration}, load.args()...)...)
		return err
	})
	return err
}

// kafkaWidePhase is widePhase over the Kafka protocol: kgo's producer to 100 partitions,
// its requests pipelined on its connection (and held by the listener's queued bytes).
func (ph phases) kafkaWidePhase(ctx context.Context, res *results, pid int, addr string, duration time.Duration) (err error) {
	res.KafkaWideMemory, res.RSSMiB["100_partitions_max_rate_kafka"], err = ph.sampledPhase(pid, func() error {
		var err error
		res.KafkaWide, err = kafkaProduce(ctx, addr, "kafka-wide", 100, duration)
		*ph.lastWrite = time.Now()
		return err
	})
	return err
}

// wide is the whole of `-only memory` after the phases that fill the budgets.
func (ph phases) wide(ctx context.Context, res *results, pid int, kafkaAddr string, duration time.Duration, out string) error {
	if err := ph.widePhase(res, pid); err != nil {
		return err
	}
	if err := ph.kafkaWidePhase(ctx, res, pid, kafkaAddr, duration); err != nil {
		return err
	}
	fmt.Printf("100 partitions at max rate: %.0f rec/s, p99 %.1f ms, %d errors; agent peak RSS %.0f MiB (6 partitions: %.0f MiB)\n",
		res.Wide.Produce.RecordsPerSec, res.Wide.Produce.Latency.P99, res.Wide.Produce.Errors,
		res.RSSMiB["100_partitions_max_rate"], res.RSSMiB["6_partitions_max_rate"])
	fmt.Printf("100 partitions over Kafka (kgo): %.0f rec/s, %d errors; agent peak RSS %.0f MiB\n",
		res.KafkaWide.RecordsPerSec, res.KafkaWide.Errors, res.RSSMiB["100_partitions_max_rate_kafka"])
	printMemory(os.Stdout, widePhaseName, res.WideMemory)
	printMemory(os.Stdout, kafkaWidePhaseName, res.KafkaWideMemory)
	return writeJSON(out, *res)
}
