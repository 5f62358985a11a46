package objstore

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Store operations as metric label values.
const (
	opPut      = "put"
	opGet      = "get"
	opGetRange = "get_range"
	opHead     = "head"
	opList     = "list"
	opDelete   = "delete"
	opCheck    = "check"
	opClock    = "clock"
)

var (
	metricRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_store_requests_total",
		Help: "Object store operations by op and result (ok, not_found, error); the store's own retries are inside one operation.",
	}, []string{"op", "result"})
	metricDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name: "streamhouse_store_request_duration_seconds", Help: "Object store operation duration by op, retries included.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"op"})
)

func init() {
	// Zero series for every op and result, so that an error rate reads 0 rather than
	// "no data" before the first error.
	for _, op := range []string{opPut, opGet, opGetRange, opHead, opList, opDelete, opCheck, opClock} {
		for _, r := range []string{"ok", "not_found", "error"} {
			metricRequests.WithLabelValues(op, r)
		}
	}
}

// Instrument returns s counting and timing every operation in the default Prometheus
// registry (streamhouse_store_requests_total{op,result} and
// streamhouse_store_request_duration_seconds{op}). A missing object counts as not_found,
// not as an error: readers probe for objects that may be gone.
func Instrument(s Store) Store { return instrumented{s} }

type instrumented struct{ s Store }

func observe(op string, start time.Time, err error) {
	result := "ok"
	switch {
	case errors.Is(err, ErrNotFound):
		result = "not_found"
	case err != nil:
		result = "error"
	}
	metricRequests.WithLabelValues(op, result).Inc()
	metricDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

func (i instrumented) Put(ctx context.Context, key string, parts ...[]byte) error {
	start := time.Now()
	err := i.s.Put(ctx, key, parts...)
	observe(opPut, start, err)
	return err
}

func (i instrumented) Get(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	b, err := i.s.Get(ctx, key)
	observe(opGet, start, err)
	return b, err
}

func (i instrumented) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	start := time.Now()
	b, err := i.s.GetRange(ctx, key, off, n)
	observe(opGetRange, start, err)
	return b, err
}

// GetParts implements PartsGetter, counted as one get_range (the inner store's one
// request, or its GetRanges when it is no PartsGetter).
func (i instrumented) GetParts(ctx context.Context, key string, off int64, sizes []int64) ([][]byte, error) {
	start := time.Now()
	parts, err := GetParts(ctx, i.s, key, off, sizes)
	observe(opGetRange, start, err)
	return parts, err
}

func (i instrumented) Head(ctx context.Context, key string) (ObjectInfo, error) {
	start := time.Now()
	info, err := i.s.Head(ctx, key)
	observe(opHead, start, err)
	return info, err
}

func (i instrumented) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	start := time.Now()
	infos, err := i.s.List(ctx, prefix)
	observe(opList, start, err)
	return infos, err
}

func (i instrumented) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := i.s.Delete(ctx, key)
	observe(opDelete, start, err)
	return err
}

func (i instrumented) Check(ctx context.Context) error {
	start := time.Now()
	err := i.s.Check(ctx)
	observe(opCheck, start, err)
	return err
}

func (i instrumented) Clock(ctx context.Context) (time.Time, error) {
	start := time.Now()
	t, err := i.s.Clock(ctx)
	observe(opClock, start, err)
	return t, err
}

func (i instrumented) String() string { return i.s.String() }
