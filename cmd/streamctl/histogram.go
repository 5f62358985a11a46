package main

import (
	"math"
	"math/bits"
	"time"
)

// subBuckets per power of two: values are kept with 7 significant bits, a relative error
// below 1/128 (0.8%), as an HDR histogram with two significant digits does.
const (
	subBits    = 7
	subBuckets = 1 << subBits
)

// histogram is a log-linear latency histogram in the manner of HdrHistogram: values below
// 128 ns are exact, larger ones land in one of 128 buckets per power of two. Recording is
// O(1) and allocation-free; histograms of several workers merge exactly.
type histogram struct {
	counts   [(63 - subBits + 1) * subBuckets]uint64 // durations have 63 bits
	total    uint64
	min, max time.Duration
}

func bucketOf(v time.Duration) int {
	if v < subBuckets {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - subBits - 1 // v>>e is in [128, 256)
	return (e+1)*subBuckets + int(uint64(v)>>e) - subBuckets
}

// upper returns the largest value that lands in bucket i.
func upper(i int) time.Duration {
	if i < subBuckets {
		return time.Duration(i)
	}
	e := i/subBuckets - 1
	m := uint64(i%subBuckets + subBuckets)
	return time.Duration((m+1)<<e - 1)
}

// record adds n observations of v.
func (h *histogram) record(v time.Duration, n uint64) {
	if n == 0 {
		return
	}
	if h.total == 0 || v < h.min {
		h.min = v
	}
	h.max = max(h.max, v)
	h.counts[bucketOf(v)] += n
	h.total += n
}

// merge adds o's observations.
func (h *histogram) merge(o *histogram) {
	if o.total == 0 {
		return
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

// quantile returns the value at or below which a fraction q of the observations lie
// (the bucket's upper bound, never above the largest value seen); 0 when empty.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	// The rank is the first whose share of the observations reaches q: ceil(q·total),
	// less a hair for q·total that float arithmetic put just past an integer (0.07·100).
	x := q * float64(h.total)
	rank := uint64(math.Ceil(x - x*1e-12))
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(upper(i), h.max)
		}
	}
	return h.max
}
