// Command peers runs StreamHouse and NATS JetStream side by side on this machine, in one
// run, with the floors StreamHouse stands on (MinIO PUT, etcd txn, raw LZ4), and prints a
// table of the measured figures, the targets of the "Benchmarks" issue and the cost model
// counts. `make bench-peers` runs it; docs/BENCHMARKS.md explains the method.
//
// Everything is started here, on loopback, from ./bin: etcd (with fsync), MinIO, one
// StreamHouse agent, nats-server with JetStream file storage. Load comes from
// `streamctl bench` and `nats bench`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/streamhouse/streamhouse/tests/harness"
)

func main() {
	duration := flag.Duration("duration", 20*time.Second, "length of each load phase")
	idle := flag.Duration("idle", 30*time.Second, "length of the idle phase of the cost model")
	out := flag.String("json", "", "also write the results as JSON to this file")
	flag.Parse()
	if err := run(*duration, *idle, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench-peers:", err)
		os.Exit(1)
	}
}

// results is everything measured in one run.
type results struct {
	Floors     floors             `json:"floors"`
	Throughput benchReport        `json:"produce_max"`
	CatchUp    benchReport        `json:"consume_catch_up"`
	Latency    benchReport        `json:"produce_1000_per_s"`
	LatencyOne benchReport        `json:"produce_1000_per_s_1_partition"`
	EndToEnd   benchReport        `json:"e2e_1000_per_s"`
	Wide       benchReport        `json:"produce_max_100_partitions"`
	JetStream  jetStream          `json:"jetstream"`
	Cost       costModel          `json:"cost"`
	RSSMiB     map[string]float64 `json:"agent_peak_rss_mib"`
	// CPUMicrosPerRecord: CPU time of each process during the max-rate produce phase,
	// per record produced.
	CPUMicrosPerRecord map[string]float64 `json:"cpu_us_per_record_max_rate"`
}

func run(duration, idle time.Duration, out string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bench-peers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctl, err := harness.Command("streamctl")
	if err != nil {
		return err
	}
	etcd, err := harness.StartEtcd(ctx, dir, harness.EtcdOptions{Fsync: true})
	if err != nil {
		return err
	}
	defer etcd.Stop()
	minio, err := harness.StartMinIO(ctx, dir)
	if err != nil {
		return err
	}
	defer minio.Stop()
	agent, err := harness.StartAgent(ctx, dir, harness.AgentConfig{
		Node: "bench-1", Zone: "local", Etcd: etcd.Endpoint, EtcdRoot: "/streamhouse",
		StoreURL: "s3://bench?create_bucket=true&endpoint=" + minio.Endpoint,
		Env:      []string{"AWS_ACCESS_KEY_ID=" + minio.AccessKey, "AWS_SECRET_ACCESS_KEY=" + minio.SecretKey, "AWS_REGION=us-east-1"},
	})
	if err != nil {
		return err
	}
	defer agent.Stop()
	metricsURL := "http://" + agent.AdminAddr + "/metrics"
	var lastClientCPU time.Duration // of the last streamctl bench
	bench := func(args ...string) (benchReport, error) {
		fmt.Fprintf(os.Stderr, "streamctl bench %s\n", strings.Join(args, " "))
		cmd := exec.Command(ctl, append(append([]string{"--addr", agent.GRPCAddr, "bench"}, args...), "--json", "--progress", "5s")...)
		cmd.Stderr = os.Stderr
		b, err := cmd.Output()
		if cmd.ProcessState != nil {
			lastClientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		var r benchReport
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil {
			return r, fmt.Errorf("streamctl bench %v: %w", args, err)
		}
		return r, nil
	}
	d := duration.String()
	var res results
	res.RSSMiB = map[string]float64{}

	// Throughput at 1 KiB, then the catch-up read of what it wrote, with the store and etcd
	// counts of each for the cost model.
	procs := map[string]int{"agent": agent.Process.Pid(), "minio": minio.Process.Pid(), "etcd": etcd.Process.Pid()}
	cpuBefore, err := cpuTimes(procs)
	if err != nil {
		return err
	}
	before, err := scrape(metricsURL)
	if err != nil {
		return err
	}
	if res.Throughput, err = bench("produce", "--topic", "tput", "--partitions", "6", "--record-size", "1024", "--producers", "4", "--batch", "100", "--duration", d); err != nil {
		return err
	}
	cpuAfter, err := cpuTimes(procs)
	if err != nil {
		return err
	}
	res.CPUMicrosPerRecord = map[string]float64{}
	if n := float64(res.Throughput.Produce.Records); n > 0 {
		for name := range procs {
			res.CPUMicrosPerRecord[name] = float64((cpuAfter[name] - cpuBefore[name]).Microseconds()) / n
		}
		res.CPUMicrosPerRecord["load generator"] = float64(lastClientCPU.Microseconds()) / n
	}
	written, err := scrape(metricsURL)
	if err != nil {
		return err
	}
	if res.RSSMiB["6_partitions_max_rate"], err = peakRSS(agent.Process.Pid()); err != nil {
		return err
	}
	if res.CatchUp, err = bench("consume", "--topic", "tput", "--duration", "5m"); err != nil {
		return err
	}
	read, err := scrape(metricsURL)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "idle for %s\n", idle)
	time.Sleep(idle)
	idled, err := scrape(metricsURL)
	if err != nil {
		return err
	}
	res.Cost = newCostModel(before, written, read, idled, res.Throughput, res.CatchUp, idle, 6)

	// Latency at a fixed 1000 records/s with the default 5 ms linger, then end to end.
	if res.Latency, err = bench("produce", "--topic", "lat", "--partitions", "6", "--linger-ms", "5", "--record-size", "1024", "--rate", "1000", "--batch", "1", "--duration", d); err != nil {
		return err
	}
	if res.LatencyOne, err = bench("produce", "--topic", "lat1", "--partitions", "1", "--linger-ms", "5", "--record-size", "1024", "--rate", "1000", "--batch", "1", "--duration", d); err != nil {
		return err
	}
	if res.EndToEnd, err = bench("e2e", "--topic", "e2e", "--partitions", "6", "--linger-ms", "5", "--record-size", "1024", "--rate", "1000", "--batch", "1", "--duration", d); err != nil {
		return err
	}
	// Memory with 100 partitions at full load.
	if res.Wide, err = bench("produce", "--topic", "wide", "--partitions", "100", "--record-size", "1024", "--producers", "8", "--batch", "100", "--duration", d); err != nil {
		return err
	}
	if res.RSSMiB["100_partitions_max_rate"], err = peakRSS(agent.Process.Pid()); err != nil {
		return err
	}

	// The floors, at the segment size the throughput run produced.
	if res.Floors, err = measureFloors(ctx, etcd, minio, res.Cost.MeanObjectBytes); err != nil {
		return err
	}
	if res.JetStream, err = runJetStream(ctx, dir, duration); err != nil {
		return err
	}
	printTable(os.Stdout, res)
	if out != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(out, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// benchReport is the part of `streamctl bench --json` used here.
type benchReport struct {
	Seconds float64     `json:"seconds"`
	Produce *sideReport `json:"produce,omitempty"`
	Consume *sideReport `json:"consume,omitempty"`
	E2E     *latency    `json:"e2e_latency_ms,omitempty"`
}

type sideReport struct {
	Records       uint64  `json:"records"`
	Bytes         uint64  `json:"bytes"`
	Errors        uint64  `json:"errors"`
	RecordsPerSec float64 `json:"records_per_sec"`
	MiBPerSec     float64 `json:"mib_per_sec"`
	Latency       latency `json:"latency_ms"`
}

type latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// cpuTimes reads the user + system CPU time of each process from /proc.
func cpuTimes(procs map[string]int) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for name, pid := range procs {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			return nil, err
		}
		// Fields after the command name, which is in parentheses and may hold spaces:
		// utime and stime are the 12th and 13th, in clock ticks (100 a second on Linux).
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			return nil, fmt.Errorf("/proc/%d/stat: %q", pid, b)
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[name] = time.Duration(ut+st) * 10 * time.Millisecond
	}
	return out, nil
}

// peakRSS is the process's resident set high-water mark (VmHWM), in MiB.
func peakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
	}
	kb, _ := strconv.ParseFloat(string(m[1]), 64)
	return kb / 1024, nil
}
