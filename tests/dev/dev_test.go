// Package dev_test walks the newcomer's path of the README: `streamhouse dev` in one
// terminal, the quick start's streamctl commands in another.
package dev_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/tests/harness"
)

type devCluster struct {
	t      *testing.T
	addr   string
	ctl    string
	proc   *harness.Process
	data   string
	bin    string
	etcd   string
	admin  string
	kafka  string
	logDir string
	flags  []string // more flags of `streamhouse dev`
}

func startDev(t *testing.T, data string, flags ...string) *devCluster {
	t.Helper()
	bin, err := harness.StreamhouseBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := harness.Command("streamctl")
	if err != nil {
		t.Fatal(err)
	}
	grpcPort, _ := harness.FreePort()
	etcdPort, _ := harness.FreePort()
	adminPort, _ := harness.FreePort()
	kafkaPort, _ := harness.FreePort()
	d := &devCluster{t: t, addr: fmt.Sprintf("127.0.0.1:%d", grpcPort), ctl: ctl, data: data, bin: bin,
		etcd: fmt.Sprintf("127.0.0.1:%d", etcdPort), admin: fmt.Sprintf("127.0.0.1:%d", adminPort),
		kafka: fmt.Sprintf("127.0.0.1:%d", kafkaPort), logDir: t.TempDir(), flags: flags}
	d.start()
	return d
}

func (d *devCluster) start() {
	t := d.t
	args := append([]string{"dev", "--data", d.data, "--grpc-listen", d.addr, "--etcd-listen", d.etcd, "--admin-listen", d.admin, "--kafka-listen", d.kafka}, d.flags...)
	p, err := harness.StartProcess("streamhouse-dev", d.bin, args,
		nil, filepath.Join(d.logDir, fmt.Sprintf("dev-%d.log", time.Now().UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	d.proc = p
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dev log tail:\n%s", p.LogTail(3000))
		}
		if err := p.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
	})
	harness.Eventually(t, 60*time.Second, func() error {
		if !strings.Contains(p.LogTail(1<<16), "dev cluster running") {
			return errors.New("dev cluster not running yet")
		}
		_, err := d.run("", "topic", "list")
		return err
	})
}

// run runs streamctl with STREAMHOUSE_ADDR set, as the README has the user do.
func (d *devCluster) run(stdin string, args ...string) (string, error) {
	cmd := exec.Command(d.ctl, args...)
	cmd.Env = append(cmd.Environ(), "STREAMHOUSE_ADDR="+d.addr)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *devCluster) must(stdin string, args ...string) string {
	d.t.Helper()
	out, err := d.run(stdin, args...)
	if err != nil {
		d.t.Fatalf("streamctl %v: %v\n%s", args, err, out)
	}
	return out
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

func TestQuickStartFromTheReadme(t *testing.T) {
	d := startDev(t, t.TempDir())
	if out := d.must("", "topic", "create", "test", "--partitions", "4"); !strings.Contains(out, "created topic test with 4 partitions") {
		t.Fatalf("create: %s", out)
	}
	var input strings.Builder
	for i := 1; i <= 100; i++ {
		fmt.Fprintf(&input, "{\"id\": %d}\n", i)
	}
	acks := lines(d.must(input.String(), "produce", "test", "--key", "user-1"))
	if len(acks) != 100 || acks[0] != acks[0][:strings.Index(acks[0], "@")]+"@0" || !strings.HasSuffix(acks[99], "@99") {
		t.Fatalf("produce acks: %d lines, first %q last %q", len(acks), acks[0], acks[len(acks)-1])
	}
	got := lines(d.must("", "consume", "test", "--from", "earliest", "--limit", "10"))
	if len(got) != 10 || !strings.HasSuffix(got[0], "\tuser-1\t{\"id\": 1}") || !strings.HasSuffix(got[9], "{\"id\": 10}") {
		t.Fatalf("consume: %q", got)
	}
	if got := lines(d.must("", "consume", "test", "--group", "billing", "--limit", "50")); len(got) != 50 {
		t.Fatalf("group consume read %d records", len(got))
	}
	offsets := d.must("", "group", "offsets", "billing")
	if !strings.Contains(offsets, "50") || !strings.Contains(offsets, "100") {
		t.Fatalf("group offsets:\n%s", offsets)
	}
	// The group resumes right after its commit.
	if got := lines(d.must("", "consume", "test", "--group", "billing", "--limit", "1")); len(got) != 1 || !strings.HasSuffix(got[0], "{\"id\": 51}") {
		t.Fatalf("group resume: %q", got)
	}
	status := d.must("", "cluster", "status")
	if !strings.Contains(status, "Agent: dev-1") || !strings.Contains(status, "Assigned partitions (4)") || !strings.Contains(status, "test:3 (epoch") {
		t.Fatalf("cluster status:\n%s", status)
	}
	json := lines(d.must("", "consume", "test", "--from", "99", "--output", "json"))
	if len(json) != 1 || !strings.Contains(json[0], `"offset":99`) || !strings.Contains(json[0], `"key":"user-1"`) {
		t.Fatalf("json output: %q", json)
	}
	if out, err := d.run("", "consume", "missing"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("consume of a missing topic: %v %s", err, out)
	}

	// Ctrl-C stops it cleanly, and a restart keeps the data.
	if err := d.proc.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	d.start()
	if got := lines(d.must("", "consume", "test", "--from", "earliest")); len(got) != 100 {
		t.Fatalf("after a restart, %d records", len(got))
	}
}

func TestFollowShowsNewRecordsQuickly(t *testing.T) {
	d := startDev(t, t.TempDir())
	d.must("", "topic", "create", "live", "--partitions", "1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, d.ctl, "consume", "live", "--partition", "0", "--from", "latest", "--follow")
	cmd.Env = append(cmd.Environ(), "STREAMHOUSE_ADDR="+d.addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	seen := make(chan time.Time, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			seen <- time.Now()
		}
	}()
	// The delay is measured from before the producing streamctl starts, so it is an upper
	// bound on ack-to-display: it includes starting a process and the produce itself.
	var delays []time.Duration
	for i := range 5 {
		sent := time.Now()
		d.must("", "produce", "live", fmt.Sprintf("warm-%d", i)) // the follower may start after the first
		select {
		case at := <-seen:
			delays = append(delays, at.Sub(sent).Round(time.Millisecond))
		case <-time.After(10 * time.Second):
			if i > 0 {
				t.Fatalf("record %d not shown 10s after its ack", i)
			}
		}
	}
	t.Logf("--follow showed records at most %v after the produce began (linger 5ms)", delays)
	for _, dl := range delays {
		if dl > 2*time.Second {
			t.Fatalf("--follow took %s to show a record", dl)
		}
	}
}

func TestGrpcurlSeesTheServiceAndHealth(t *testing.T) {
	grpcurl, err := harness.Binary("grpcurl")
	if err != nil {
		t.Fatal(err)
	}
	d := startDev(t, t.TempDir())
	out, err := exec.Command(grpcurl, "-plaintext", d.addr, "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "streamhouse.v1.StreamHouse") || !strings.Contains(string(out), "grpc.health.v1.Health") {
		t.Fatalf("grpcurl list: %v\n%s", err, out)
	}
	out, err = exec.Command(grpcurl, "-plaintext", d.addr, "grpc.health.v1.Health/Check").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"SERVING"`) {
		t.Fatalf("grpcurl health check: %v\n%s", err, out)
	}
	out, err = exec.Command(grpcurl, "-plaintext", "-d", `{"name": "via-grpcurl", "partitions": 2}`, d.addr, "streamhouse.v1.StreamHouse/CreateTopic").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"partitions": 2`) {
		t.Fatalf("grpcurl CreateTopic: %v\n%s", err, out)
	}
}

// Retention from the shell: alter a topic's retention, watch the log start move in
// describe, and read below it.
func TestRetentionFromTheCLI(t *testing.T) {
	d := startDev(t, t.TempDir())
	// Small merge targets: retention removes whole segments, and keeps the newest.
	d.must("", "topic", "create", "logs", "--partitions", "1", "--linger-ms", "1", "--merge-bytes", "2048")
	for round := range 5 {
		var input strings.Builder
		for i := range 200 {
			fmt.Fprintf(&input, "{\"round\": %d, \"i\": %d, \"pad\": %q}\n", round, i, strings.Repeat(fmt.Sprint(i), 40))
		}
		d.must(input.String(), "produce", "logs")
	}
	if out, err := d.run("", "topic", "alter", "logs", "--retention-bytes", "10"); err == nil || !strings.Contains(out, "InvalidArgument") {
		t.Fatalf("alter to 10 retention bytes: %v %s", err, out)
	}
	if out, err := d.run("", "topic", "alter", "logs"); err == nil || !strings.Contains(out, "nothing to change") {
		t.Fatalf("alter with no setting: %v %s", err, out)
	}
	out := d.must("", "topic", "alter", "logs", "--retention-bytes", "4096")
	if !strings.Contains(out, "retention bytes 4096") || !strings.Contains(out, "linger 1ms") {
		t.Fatalf("alter: %s", out)
	}
	var start int64
	harness.Eventually(t, 30*time.Second, func() error {
		out := d.must("", "topic", "describe", "logs")
		rows := lines(out)
		var p, epoch, hwm, segs, bytes int64
		var owner, zone string
		if _, err := fmt.Sscan(rows[len(rows)-1], &p, &owner, &zone, &epoch, &start, &hwm, &segs, &bytes); err != nil {
			return fmt.Errorf("describe: %v\n%s", err, out)
		}
		if start == 0 || hwm != 1000 {
			return fmt.Errorf("log start %d, hwm %d:\n%s", start, hwm, out)
		}
		return nil
	})
	// Reading from offset 0 goes on from the log start, and says so on stderr.
	out = d.must("", "consume", "logs", "--from", "0", "--partition", "0")
	got := lines(out)
	if !strings.Contains(got[0], fmt.Sprintf("offsets 0..%d were removed by retention; continuing from %d", start-1, start)) {
		t.Fatalf("consume from 0 does not say where the log starts: %q", got[0])
	}
	if n := int64(len(got) - 1); n != 1000-start {
		t.Fatalf("consume from 0 read %d records, want %d (log start %d)", n, 1000-start, start)
	}
	if earliest := lines(d.must("", "consume", "logs", "--from", "earliest")); int64(len(earliest)) != 1000-start {
		t.Fatalf("consume from earliest read %d records, want %d", len(earliest), 1000-start)
	}
}

// TestCLIOnWideTopicsAndLongLines: `produce --value` takes values as the original
// streamctl did; `consume --group` commits the offsets of a topic of
// more partitions than one etcd transaction takes (it sent them in one request, refused
// as invalid, and the group never moved), and `produce` sends long lines from stdin in
// requests under the agent's batch limit (500 lines of 600 KB were one request of 300 MB,
// refused partway through the input).
func TestCLIOnWideTopicsAndLongLines(t *testing.T) {
	d := startDev(t, t.TempDir())
	d.must("", "topic", "create", "wide", "--partitions", "200")
	d.must("a\nb\n", "produce", "wide", "--partition", "7")
	if got := lines(d.must("", "consume", "wide", "--group", "g", "--limit", "2")); len(got) != 2 {
		t.Fatalf("group consume of 200 partitions read %q", got)
	}
	if offsets := d.must("", "group", "offsets", "g"); !strings.Contains(offsets, "wide") {
		t.Fatalf("no offsets committed for the 200-partition topic:\n%s", offsets)
	}
	// The original streamctl's --value, as its status page ran it.
	if acks := lines(d.must("", "produce", "wide", "--partition", "3", "--value", `{"id": 1}`, "--value", `{"id": 2}`)); len(acks) != 2 || acks[1] != "wide/3@1" {
		t.Fatalf("produce --value: %q", acks)
	}
	d.must("", "topic", "create", "long", "--partitions", "1")
	var input strings.Builder
	for i := range 40 {
		fmt.Fprintf(&input, "%d-%s\n", i, strings.Repeat("x", 600_000))
	}
	if acks := lines(d.must(input.String(), "produce", "long")); len(acks) != 40 || !strings.HasSuffix(acks[39], "@39") {
		t.Fatalf("produce of 40 lines of 600 KB: %d acks", len(acks))
	}
}
