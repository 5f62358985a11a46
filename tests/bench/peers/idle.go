package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// idleWrites watches every key of etcd for d and returns what was written, one line per
// key with its event count and kind, so that the cost model's idle figure names its
// writes rather than only counting them.
func idleWrites(ctx context.Context, endpoint string, d time.Duration) ([]string, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("watch etcd while idle: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), d)
	defer cancel()
	counts := map[string]int{}
	for resp := range cli.Watch(ctx, "", clientv3.WithPrefix()) {
		if err := resp.Err(); err != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("watch etcd while idle: %w", err)
		}
		for _, ev := range resp.Events {
			counts[strings.ToLower(ev.Type.String())+" "+string(ev.Kv.Key)]++
		}
	}
	out := make([]string, 0, len(counts))
	for k, n := range counts {
		out = append(out, fmt.Sprintf("%s ×%d", k, n))
	}
	sort.Strings(out)
	return out, nil
}
