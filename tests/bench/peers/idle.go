package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
)

// idleWrites watches every key of etcd for d and returns what was written, one line per
// key with its event count and kind, so that the cost model's idle figure names its
// writes rather than only counting them; and how many of the events were of a cluster
// lock (coordination.LocksPrefix: the orphan sweeper's, taken and let go once a sweep by
// one agent of the cluster), a cost of the cluster rather than of its partitions. Each
// of those events is a write of its own (a lock is a transaction putting its key, its
// release a delete).
func idleWrites(ctx context.Context, endpoint string, d time.Duration) (written []string, lockEvents int, err error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, 0, fmt.Errorf("watch etcd while idle: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), d)
	defer cancel()
	counts := map[string]int{}
	for resp := range cli.Watch(ctx, "", clientv3.WithPrefix()) {
		if err := resp.Err(); err != nil && ctx.Err() == nil {
			return nil, 0, fmt.Errorf("watch etcd while idle: %w", err)
		}
		for _, ev := range resp.Events {
			counts[strings.ToLower(ev.Type.String())+" "+string(ev.Kv.Key)]++
			if strings.Contains(string(ev.Kv.Key), "/"+coordination.LocksPrefix) {
				lockEvents++
			}
		}
	}
	out := make([]string, 0, len(counts))
	for k, n := range counts {
		out = append(out, fmt.Sprintf("%s ×%d", k, n))
	}
	sort.Strings(out)
	return out, lockEvents, nil
}
