package main

import (
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
		for _, b := range []string{"pending", "recent", "cache"} {
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
// its largest live heap.
func printMemory(w io.Writer, peaks [2]memorySample) {
	for i, s := range peaks {
		fmt.Fprintf(w, "agent memory at its largest %s of the 100-partition phase (%.0f s in): RSS %.0f MiB = Go heap in use %.0f + free heap not returned %.0f + stacks %.0f + the rest %.0f; GC goal %.0f MiB\n",
			[]string{"RSS", "live heap"}[i], s.At, s.RSSMiB, s.HeapMiB, s.FreeMiB, s.StackMiB, s.RSSMiB-s.HeapMiB-s.FreeMiB-s.StackMiB, s.GoalMiB)
		fmt.Fprintf(w, "  budgets then (used / limit, MiB): pending %.0f / %.0f, recent %.0f / %.0f, cache %.0f / %.0f; live heap at the last GC %.0f, of which beyond the budgets %.0f\n",
			s.Budgets["pending"], s.Limits["pending"], s.Budgets["recent"], s.Limits["recent"], s.Budgets["cache"], s.Limits["cache"],
			s.LiveMiB, s.LiveMiB-s.Budgets["pending"]-s.Budgets["recent"]-s.Budgets["cache"])
	}
}

// widePhase produces at max rate to 100 partitions, sampling the agent's memory, and
// records its peak resident set once the merges the phase caused are done.
func (ph phases) widePhase(res *results, pid int) error {
	stop := make(chan struct{})
	sampled := make(chan error, 1)
	go func() {
		var err error
		res.WideMemory[0], res.WideMemory[1], err = sampleMemory(pid, ph.metricsURL, 500*time.Millisecond, stop)
		sampled <- err
	}()
	var err error
	res.Wide, err = ph.bench(append([]string{"produce", "--topic", "wide", "--partitions", "100", "--record-size", "1024", "--producers", "8", "--duration", ph.duration}, load.args()...)...)
	if err == nil {
		_, _, err = settle(ph.metricsURL, *ph.lastWrite)
	}
	close(stop)
	if serr := <-sampled; err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	res.RSSMiB["100_partitions_max_rate"], err = peakRSS(pid)
	return err
}

// wide is the whole of `-only memory` after the phases that fill the budgets.
func (ph phases) wide(res *results, pid int, out string) error {
	if err := ph.widePhase(res, pid); err != nil {
		return err
	}
	fmt.Printf("100 partitions at max rate: %.0f rec/s, p99 %.1f ms, %d errors; agent peak RSS %.0f MiB (6 partitions: %.0f MiB)\n",
		res.Wide.Produce.RecordsPerSec, res.Wide.Produce.Latency.P99, res.Wide.Produce.Errors,
		res.RSSMiB["100_partitions_max_rate"], res.RSSMiB["6_partitions_max_rate"])
	printMemory(os.Stdout, res.WideMemory)
	return writeJSON(out, *res)
}
