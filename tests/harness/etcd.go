package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
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

// Etcd is a real single-member etcd started from ./bin/etcd.
type Etcd struct {
	// Endpoint is the client URL, http://127.0.0.1:<port>.
	Endpoint string
	Process  *Process

	dir  string
	args []string
}

// StartEtcd starts etcd with its data in dir and waits until it is healthy.
func StartEtcd(ctx context.Context, dir string, opts EtcdOptions) (*Etcd, error) {
	clientPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	client := "http://127.0.0.1:" + itoa(clientPort)
	peer := "http://127.0.0.1:" + itoa(peerPort)
	args := []string{
		"--name", "test",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test=" + peer,
		// Short ticks so that the minimum lease TTL (1s) and elections are test-sized.
		"--heartbeat-interval", "10", "--election-timeout", "100",
		"--log-level", "warn",
	}
	if !opts.Fsync {
		args = append(args, "--unsafe-no-fsync")
	}
	args = append(args, opts.ExtraArgs...)
	e := &Etcd{Endpoint: client, dir: dir, args: args}
	if err := e.start(ctx); err != nil {
		return nil, err
	}
	return e, nil
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
