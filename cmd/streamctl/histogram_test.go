package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Every quantile is within the histogram's 0.8% relative error of the exact one, over
// values from nanoseconds to minutes, and merging workers' histograms changes nothing.
func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var whole, a, b histogram
	var values []time.Duration
	for i := range 100000 {
		v := time.Duration(rng.ExpFloat64() * float64(time.Duration(1)<<rng.IntN(36)))
		values = append(values, v)
		whole.record(v, 1)
		if i%2 == 0 {
			a.record(v, 1)
		} else {
			b.record(v, 1)
		}
	}
	a.merge(&b)
	slices.Sort(values)
	for _, q := range []float64{0, 0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		rank := max(int(math.Ceil(q*float64(len(values)))), 1)
		exact := values[rank-1]
		got := whole.quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/128+1 {
			t.Errorf("q%v = %v, exact %v", q, got, exact)
		}
		if m := a.quantile(q); m != got {
			t.Errorf("q%v of merged halves = %v, of the whole %v", q, m, got)
		}
	}
	if whole.max != values[len(values)-1] || whole.min != values[0] || whole.total != uint64(len(values)) {
		t.Errorf("min %v max %v total %d; want %v %v %d", whole.min, whole.max, whole.total, values[0], values[len(values)-1], len(values))
	}
}

func TestHistogramWeightsAndEmpty(t *testing.T) {
	var h histogram
	if h.quantile(0.99) != 0 {
		t.Fatal("an empty histogram has a quantile")
	}
	h.record(time.Millisecond, 99)
	h.record(time.Second, 1)
	if q := h.quantile(0.5); q < time.Millisecond || q > time.Millisecond*129/128 {
		t.Errorf("p50 = %v, want 1ms", q)
	}
	if q := h.quantile(1); q != time.Second {
		t.Errorf("max = %v, want 1s", q)
	}
	for i := range len(h.counts) {
		if bucketOf(upper(i)) != i {
			t.Fatalf("bucket %d: its upper bound %v lands in bucket %d", i, upper(i), bucketOf(upper(i)))
		}
	}
}

// A quantile is the smallest value at or below which at least that fraction of the
// observations lie: of 1..160 ns, the p99 is 159 ns (98.75% lie at or below 158).
func TestHistogramQuantileRank(t *testing.T) {
	var h histogram
	for v := range 160 {
		h.record(time.Duration(v+1), 1)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.99, 159}, {0.5, 80}, {0.07, 12}, {1, 160}, {0, 1}} {
		if got := h.quantile(c.q); got != c.want {
			t.Errorf("q%v = %v, want %v", c.q, got, c.want)
		}
	}
}
