package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/actors"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway/membudget"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

// registerGoCollector replaces the default registry's Go collector by one that also
// reports the runtime's GC metrics (go_gc_heap_live_bytes: the heap the last GC found
// live, go_gc_heap_goal_bytes, go_gc_gomemlimit_bytes): memory beyond the agent's budgets
// is told from garbage by them, not by go_memstats_heap_inuse_bytes.
var registerGoCollector = sync.OnceFunc(func() {
	prometheus.Unregister(collectors.NewGoCollector())
	prometheus.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsGC)))
})

// serveAdmin serves /metrics (Prometheus), /healthz (the process is alive), /readyz (the
// agent holds its session, is in the cluster, and reaches etcd and the store) and
// /debug/pprof/ on lis.
func serveAdmin(lis net.Listener, coord *coordination.Client, store objstore.Store, node *actors.Node,
	reads *membudget.Budget, lag prometheus.Collector, log *zap.Logger) (*http.Server, error) {
	// The process's own collectors plus lag, which reads etcd at scrape time, and the
	// node's memory budgets with the listeners' read budget. Registered here rather than globally so that a process can
	// serve more than one admin port.
	registerGoCollector()
	reg := prometheus.NewRegistry()
	if err := reg.Register(lag); err != nil {
		return nil, fmt.Errorf("register lag collector: %w", err)
	}
	readBudget := actors.MemoryBudget{Name: "read", Used: reads.Held, Limit: reads.Limit()}
	if err := reg.Register(node.MemoryCollector(readBudget)); err != nil {
		return nil, fmt.Errorf("register memory collector: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{prometheus.DefaultGatherer, reg}, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx, coord, store, node); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin HTTP server stopped", zap.Error(err))
		}
	}()
	return srv, nil
}

func ready(ctx context.Context, coord *coordination.Client, store objstore.Store, node *actors.Node) error {
	if node.Client() == nil {
		return errors.New("rejoining the cluster (session lost)")
	}
	// One key, read linearizably (a quorum must answer): not a count of the root, which
	// etcd walks key by key, every key of the cluster at every probe.
	if _, err := coord.Etcd().Get(ctx, coord.Keys().Root()); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	if err := store.Check(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}
