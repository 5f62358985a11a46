package main

import (
	"fmt"
	"io"
	"math"
	"sort"
)

// stageStat is where a produce request's time went in one phase, from the agent's
// streamhouse_produce_stage_seconds: the mean and an estimated p99 of each stage (by
// linear interpolation inside the histogram's bucket, so within its factor of 2).
type stageStat struct {
	Count  float64 `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P99Ms  float64 `json:"p99_ms"`
}

// stages is each stage's stageStat between two scrapes.
func stages(before, after sample) map[string]stageStat {
	out := map[string]stageStat{}
	f := after["streamhouse_produce_stage_seconds"]
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		stage := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "stage" {
				stage = l.GetValue()
			}
		}
		h := m.GetHistogram()
		count, sum := float64(h.GetSampleCount()), h.GetSampleSum()
		var upper, cum []float64
		for _, b := range h.GetBucket() {
			upper = append(upper, b.GetUpperBound())
			cum = append(cum, float64(b.GetCumulativeCount()))
		}
		if prev := before.histogram("streamhouse_produce_stage_seconds", "stage", stage); prev != nil {
			count -= float64(prev.GetSampleCount())
			sum -= prev.GetSampleSum()
			for i, b := range prev.GetBucket() {
				if i < len(cum) {
					cum[i] -= float64(b.GetCumulativeCount())
				}
			}
		}
		if count <= 0 {
			continue
		}
		out[stage] = stageStat{Count: count, MeanMs: sum / count * 1e3, P99Ms: quantile(upper, cum, count, 0.99) * 1e3}
	}
	return out
}

// quantile estimates the q quantile of a histogram of count samples from its cumulative
// bucket counts, interpolating linearly inside the bucket it falls in.
func quantile(upper, cum []float64, count, q float64) float64 {
	rank := q * count
	lower, below := 0.0, 0.0
	for i := range upper {
		if cum[i] >= rank {
			if math.IsInf(upper[i], 1) {
				return lower
			}
			return lower + (upper[i]-lower)*(rank-below)/max(cum[i]-below, 1)
		}
		lower, below = upper[i], cum[i]
	}
	return lower
}

// printStages writes where the time of the 6-partition latency phase went, per segment,
// and what it cost.
func printStages(w io.Writer, r results) {
	printStageTable(w, fmt.Sprintf("%d rec/s on 6 partitions", r.LatencyRate), r.LatencyStages)
	secs := max(r.Latency.Seconds, 1)
	fmt.Fprintf(w, "\nPer second: %.0f segments, %.0f objects PUT by the flusher, %.0f etcd writes, store requests",
		r.LatencyStages["commit"].Count/secs, r.LatencyCounts.Objects/secs, r.LatencyCounts.EtcdWrites/secs)
	for _, op := range sortedKeys(r.LatencyCounts.StoreRequests) {
		fmt.Fprintf(w, " %s %.3g", op, r.LatencyCounts.StoreRequests[op]/secs)
	}
	fmt.Fprint(w, ". Cores busy (of 2):")
	total := 0.0
	for _, p := range sortedKeys(r.LatencyCores) {
		fmt.Fprintf(w, " %s %.2f,", p, r.LatencyCores[p])
		total += r.LatencyCores[p]
	}
	fmt.Fprintf(w, " all %.2f.\n", total)
}

// phaseCounts is what a phase asked of the store and etcd.
type phaseCounts struct {
	Objects    float64 `json:"objects"`     // written by the flusher (merges' not counted)
	EtcdWrites float64 `json:"etcd_writes"` // requests, merges' included
	// StoreRequests counts every request to the store by op, merges' included.
	StoreRequests map[string]float64 `json:"store_requests"`
}

func countsBetween(before, after sample) phaseCounts {
	c := phaseCounts{
		Objects:       after.sum("streamhouse_object_segments") - before.sum("streamhouse_object_segments"),
		EtcdWrites:    after.etcdWrites() - before.etcdWrites(),
		StoreRequests: after.byLabel("streamhouse_store_requests_total", "op"),
	}
	for op, n := range before.byLabel("streamhouse_store_requests_total", "op") {
		if c.StoreRequests[op] -= n; c.StoreRequests[op] == 0 {
			delete(c.StoreRequests, op)
		}
	}
	return c
}

// stageOrder is the order a request passes the stages in.
var stageOrder = map[string]int{"batch_wait": 0, "queue": 1, "encode": 2, "upload": 3, "commit_wait": 4, "commit": 5}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// printStageTable writes the mean and p99 of each stage of a phase's segments.
func printStageTable(w io.Writer, phase string, st map[string]stageStat) {
	names := make([]string, 0, len(st))
	for s := range st {
		names = append(names, s)
	}
	sort.Slice(names, func(i, j int) bool { return stageOrder[names[i]] < stageOrder[names[j]] })
	fmt.Fprintf(w, "| %s, per segment |", phase)
	for _, s := range names {
		fmt.Fprintf(w, " %s |", s)
	}
	fmt.Fprint(w, "\n|---|")
	for range names {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprint(w, "\n| mean / p99 (from buckets), ms |")
	for _, s := range names {
		fmt.Fprintf(w, " %.1f / %.1f |", st[s].MeanMs, st[s].P99Ms)
	}
	fmt.Fprintln(w)
}
