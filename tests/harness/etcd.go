package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// EtcdOptions tune a test etcd. The zero value is a fast single member.
type EtcdOptions struct {
	// Fsync keeps etcd's fsyncs. Default false (--unsafe-no-fsync): tests care about
	// behaviour, not durability across power loss, and fsyncs dominate their run time on
	// slow disks. Benchmarks that report commit latency set it.
	Fsync bool
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
}

// Etcd is a real etcd member started from ./bin/etcd.
type Etcd struct {
	// Endpoint is the client URL, http://127.0.0.1:<port>.
	Endpoint string
	Process  *Process

	dir  string
	args []string
}

// StartEtcd starts etcd with its data in dir and waits until it is healthy.
func StartEtcd(ctx context.Context, dir string, opts EtcdOptions) (*Etcd, error) {
	c, err := StartEtcdCluster(ctx, dir, 1, opts)
	if err != nil {
		return nil, err
	}
	return c.Members[0], nil
}

// EtcdCluster is a real etcd cluster of several members on loopback.
type EtcdCluster struct {
	Members []*Etcd
}

// StartEtcdCluster starts n members with their data under dir and waits until every one
// is healthy (which needs a quorum).
func StartEtcdCluster(ctx context.Context, dir string, n int, opts EtcdOptions) (*EtcdCluster, error) {
	var peers []string
	c := &EtcdCluster{}
	for i := range n {
		clientPort, err := FreePort()
		if err != nil {
			return nil, err
		}
		peerPort, err := FreePort()
		if err != nil {
			return nil, err
		}
		name := "test"
		if n > 1 {
			name = fmt.Sprintf("m%d", i)
		}
		client := "http://127.0.0.1:" + itoa(clientPort)
		peer := "http://127.0.0.1:" + itoa(peerPort)
		peers = append(peers, name+"="+peer)
		c.Members = append(c.Members, &Etcd{Endpoint: client, dir: filepath.Join(dir, name), args: []string{
			"--name", name,
			"--data-dir", filepath.Join(dir, name, "etcd"),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--log-level", "warn",
		}})
	}
	// Short ticks so that the minimum lease TTL (1s) and elections are test-sized; a
	// cluster's members share the cores, so it gets more room before an election.
	ticks := []string{"--heartbeat-interval", "10", "--election-timeout", "100"}
	if n > 1 {
		ticks = []string{"--heartbeat-interval", "50", "--election-timeout", "500"}
	}
	for _, e := range c.Members {
		e.args = append(e.args, "--initial-cluster", strings.Join(peers, ","), "--initial-cluster-state", "new")
		e.args = append(e.args, ticks...)
		if !opts.Fsync {
			e.args = append(e.args, "--unsafe-no-fsync")
		}
		e.args = append(e.args, opts.ExtraArgs...)
		if err := os.MkdirAll(e.dir, 0o755); err != nil {
			return nil, err
		}
	}
	errs := make(chan error, n)
	for _, e := range c.Members {
		go func() { errs <- e.start(ctx) }()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		_ = c.Stop()
		return nil, first
	}
	return c, nil
}

// Endpoints are the members' client URLs.
func (c *EtcdCluster) Endpoints() []string {
	var eps []string
	for _, e := range c.Members {
		eps = append(eps, e.Endpoint)
	}
	return eps
}

// Stop stops every member; the error names the first that would not exit.
func (c *EtcdCluster) Stop() error {
	var first error
	for _, e := range c.Members {
		if e.Process == nil {
			continue
		}
		if err := e.Stop(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (e *Etcd) start(ctx context.Context) error {
	bin, err := Binary("etcd")
	if err != nil {
		return err
	}
	p, err := StartProcess("etcd", bin, e.args, nil, filepath.Join(e.dir, fmt.Sprintf("etcd-%d.log", time.Now().UnixNano())))
	if err != nil {
		return err
	}
	health := e.Endpoint + "/health"
	err = waitReady(ctx, p, 30*time.Second, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, health, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var h struct{ Health string }
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h.Health != "true" {
			return fmt.Errorf("%s: %s %q %v", health, resp.Status, h.Health, err)
		}
		return nil
	})
	if err != nil {
		_ = p.Stop(5 * time.Second)
		return err
	}
	e.Process = p
	return nil
}

// Restart stops etcd gracefully and starts it again on the same ports and data.
func (e *Etcd) Restart(ctx context.Context) error {
	if err := e.Stop(); err != nil {
		return err
	}
	return e.start(ctx)
}

// Stop stops etcd; the error says if it would not exit.
func (e *Etcd) Stop() error { return e.Process.Stop(10 * time.Second) }
