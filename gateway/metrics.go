package gateway

import (
	"context"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

var (
	metricRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_requests_total", Help: "Client API calls by method and gRPC code.",
	}, []string{"method", "code"})
	metricRequestDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name: "streamhouse_request_duration_seconds", Help: "Client API call duration by method (Subscribe: the whole stream).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
	}, []string{"method"})
	metricReadWaits = promauto.NewCounter(prometheus.CounterOpts{
		Name: "streamhouse_read_waits_total",
		Help: "Fetches (gRPC and Kafka) that waited for the agent's read budget (--max-read-bytes), spent by answers not yet written to their clients.",
	})
)

// Interceptors count every call of the API by method and code and time it. Methods are
// the service's own (a bounded set); no label carries a topic, partition or offset.
func Interceptors() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			start := time.Now()
			resp, err := handler(ctx, req)
			observe(info.FullMethod, start, err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			start := time.Now()
			err := handler(srv, ss)
			observe(info.FullMethod, start, err)
			return err
		}),
	}
}

func observe(fullMethod string, start time.Time, err error) {
	method := path.Base(fullMethod)
	metricRequests.WithLabelValues(method, status.Code(err).String()).Inc()
	metricRequestDuration.WithLabelValues(method).Observe(time.Since(start).Seconds())
}
