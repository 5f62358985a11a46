package coordination

import (
	"context"
	"errors"
	"io"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	metricEtcdRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_etcd_requests_total",
		Help: "etcd calls made by this process, by gRPC method (Range, Txn, LeaseGrant, Watch, ...) and code; streams count once when they end.",
	}, []string{"method", "code"})
	metricEtcdWrites = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "streamhouse_etcd_writes_total",
		Help: "etcd calls of this process that went through etcd's raft log and succeeded (Put, DeleteRange, LeaseGrant, LeaseRevoke, Compact, a Txn with a put or delete in either branch), by gRPC method: the writes each cost an fsync of etcd's log.",
	}, []string{"method"})
	metricEtcdDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name: "streamhouse_etcd_request_duration_seconds", Help: "etcd unary call duration by gRPC method, client retries included.",
		Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
	}, []string{"method"})
)

// DialOptions instrument an etcd client: pass them in clientv3.Config.DialOptions. Every
// call is counted in streamhouse_etcd_requests_total{method,code}, unary calls are timed
// in streamhouse_etcd_request_duration_seconds{method}, and those that wrote are counted
// in streamhouse_etcd_writes_total{method}. Methods are etcd's own
// (a bounded set); no label carries a key.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			start := time.Now()
			err := invoker(ctx, method, req, reply, cc, opts...)
			name := path.Base(method)
			metricEtcdRequests.WithLabelValues(name, status.Code(err).String()).Inc()
			metricEtcdDuration.WithLabelValues(name).Observe(time.Since(start).Seconds())
			if err == nil && throughRaft(req) {
				metricEtcdWrites.WithLabelValues(name).Inc()
			}
			return err
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			s, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				metricEtcdRequests.WithLabelValues(path.Base(method), status.Code(err).String()).Inc()
				return nil, err
			}
			return &countedStream{ClientStream: s, method: path.Base(method)}, nil
		}),
	}
}

// countedStream counts a stream (Watch, LeaseKeepAlive) once, with the code it ends with.
type countedStream struct {
	grpc.ClientStream
	method string
	done   bool
}

func (s *countedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil && !s.done {
		s.done = true
		code := status.Code(err).String()
		if errors.Is(err, io.EOF) {
			code = codes.OK.String()
		}
		metricEtcdRequests.WithLabelValues(s.method, code).Inc()
	}
	return err
}

// throughRaft reports whether etcd serves req through its raft log, as etcd's server
// decides (etcdserver/txn.IsTxnReadonly): every call that may change the keyspace or the
// leases, a transaction included unless each operation of both its branches is a range
// read, whichever branch runs.
func throughRaft(req any) bool {
	switch r := req.(type) {
	case *etcdserverpb.PutRequest, *etcdserverpb.DeleteRangeRequest, *etcdserverpb.LeaseGrantRequest,
		*etcdserverpb.LeaseRevokeRequest, *etcdserverpb.CompactionRequest:
		return true
	case *etcdserverpb.TxnRequest:
		for _, op := range append(r.Success[:len(r.Success):len(r.Success)], r.Failure...) {
			if op.GetRequestRange() == nil {
				return true
			}
		}
	}
	return false
}
