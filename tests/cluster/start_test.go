package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/streamhouse/streamhouse/tests/harness"
)

// startAgent runs `streamhouse agent` for node with free ports but for those args set,
// and returns once it has ended (or after timeout) with its exit code, its stderr and
// how long it ran. signal, if set, is sent after it has run for a second.
func (tc *testCluster) startAgent(t *testing.T, node string, timeout time.Duration, sig syscall.Signal, args ...string) (int, string, time.Duration) {
	t.Helper()
	bin, err := harness.StreamhouseBinary()
	if err != nil {
		t.Fatal(err)
	}
	port := func() string {
		p, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("127.0.0.1:%d", p)
	}
	flags := map[string]string{"--node": node, "--etcd": etcd.Endpoint, "--etcd-root": tc.root, "--store": "file://" + t.TempDir(),
		"--cluster-listen": port(), "--grpc-listen": port(), "--admin-listen": port(), "--kafka-listen": port()}
	for i := 0; i+1 < len(args); i += 2 {
		flags[args[i]] = args[i+1]
	}
	cmdArgs := []string{"agent", "--log-format", "console"}
	for k, v := range flags {
		cmdArgs = append(cmdArgs, k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, cmdArgs...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if sig != 0 {
		time.AfterFunc(time.Second, func() { _ = cmd.Process.Signal(sig) })
	}
	err = cmd.Wait()
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("agent %s %v still running after %v; stderr:\n%s", node, args, timeout, stderr.String())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String(), took
}

// TestAgentThatCannotStartChangesNothing: an agent whose client API port is taken, or
// that is given the name of an agent that runs, fails its start with a message saying so
// and writes nothing to the cluster's etcd (before, the first joined the cluster, and
// left it, and the second took the running agent's node key over and deleted it when it
// stopped); one stopped while it waits for etcd exits 0 at once.
func TestAgentThatCannotStartChangesNothing(t *testing.T) {
	tc := newCluster(t, 1, 0)
	running := tc.agents[0]
	ctx := context.Background()
	nodeKey := tc.coord.Keys().Node(running.Config.Node)
	before, err := tc.coord.Etcd().Get(ctx, nodeKey)
	if err != nil || len(before.Kvs) != 1 {
		t.Fatalf("the running agent's node key: %v, %v", before.Kvs, err)
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	writes := tc.coord.Etcd().Watch(wctx, tc.root, clientv3.WithPrefix(), clientv3.WithRev(before.Header.Revision+1))

	code, stderr, _ := tc.startAgent(t, "agent-2", time.Minute, 0, "--grpc-listen", running.GRPCAddr)
	if code != 1 || !strings.Contains(stderr, "client API on \""+running.GRPCAddr+"\"") {
		t.Fatalf("an agent whose API port is taken: exit %d, stderr:\n%s", code, stderr)
	}
	code, stderr, took := tc.startAgent(t, running.Config.Node, time.Minute, 0)
	if code != 1 || !strings.Contains(stderr, "is registered by a live agent") {
		t.Fatalf("an agent named as one that runs: exit %d, stderr:\n%s", code, stderr)
	}
	t.Logf("an agent named as one that runs refused after %v", took.Round(100*time.Millisecond))
	// Both have exited: whatever they wrote comes before a sentinel written now, and the
	// watch is read up to it (cancelled, it could drop events still on their way).
	sentinel := tc.root + "/test-sentinel"
	if _, err := tc.coord.Etcd().Put(ctx, sentinel, "end"); err != nil {
		t.Fatal(err)
	}
	deadline := time.AfterFunc(30*time.Second, stopWatch)
	defer deadline.Stop()
	reached := false
	for resp := range writes {
		for _, ev := range resp.Events {
			k := string(ev.Kv.Key)
			if k == sentinel {
				reached = true
				break
			}
			if strings.Contains(k, "/nodes/") || strings.Contains(k, "agent-2") || strings.Contains(k, "/members/") {
				t.Errorf("a start that failed wrote %s %s", ev.Type, k)
			}
		}
		if reached {
			break
		}
	}
	if !reached {
		t.Fatal("the watch of the cluster's keys ended before the sentinel")
	}
	after, err := tc.coord.Etcd().Get(ctx, nodeKey)
	if err != nil || len(after.Kvs) != 1 || after.Kvs[0].Lease != before.Kvs[0].Lease {
		t.Fatalf("the running agent's node key after the failed starts: %v, %v (before: lease %x)", after.Kvs, err, before.Kvs[0].Lease)
	}

	code, stderr, took = tc.startAgent(t, "agent-3", 20*time.Second, syscall.SIGTERM, "--etcd", "127.0.0.1:1")
	if code != 0 || !strings.Contains(stderr, "stopped before it had started") || took > 10*time.Second {
		t.Fatalf("an agent stopped while it waits for etcd: exit %d after %v, stderr:\n%s", code, took, stderr)
	}
}
