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
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/streamhouse/streamhouse/actors"
	"github.com/streamhouse/streamhouse/tests/harness"
)

func main() {
	duration := flag.Duration("duration", 20*time.Second, "length of each load phase")
	idle := flag.Duration("idle", 30*time.Second, "length of the idle phase of the cost model")
	out := flag.String("json", "", "also write the results as JSON to this file")
	only := flag.String("only", "", `run one phase alone (for A/B runs of agent settings): "throughput" (max-rate produce, its CPU per record and merge cost) "latency" (1000 records/s and its floor) or "memory" (the phases that fill the agent's budgets, then 100 partitions at max rate, sampling its memory)`)
	flag.IntVar(&load.batch, "batch", 1000, "records per produce request in the max-rate phases (1000 of 1 KiB: kgo's default batch of up to 1 MB)")
	flag.IntVar(&load.inFlight, "in-flight", 2, "requests each of the producers keeps in flight in the max-rate phases")
	flag.IntVar(&minioDrives, "minio-drives", 1, "MinIO's drives (directories on one disk): with more than one MinIO erasure-codes objects across them (EC:2 with 4) and writes with O_DIRECT instead of through the page cache")
	flag.BoolVar(&kafkaFirst, "kafka-first", false, "run the Kafka (kgo) max-rate phase before the gRPC one rather than after it and the catch-up read (with -only throughput: both max-rate phases, Kafka first), to tell what the phases' order costs each")
	flag.IntVar(&latencyRate, "rate", 1000, "records per second of the latency phases: the target is at 1000; lower rates show how p99 moves with the load on the machine")
	flag.IntVar(&latencyLinger, "linger-ms", 5, "linger of the latency phases' topics: the target is at 5 ms; longer ones show what the cost model's counts at that rate become")
	profile := flag.String("profile", "", "write CPU profiles of each phase into this directory: the load generator's over the phase, the agent's over a window of half the phase (at most 8s) starting a second in")
	flag.Parse()
	if *only != "" && *only != "throughput" && *only != "latency" && *only != "memory" {
		fmt.Fprintf(os.Stderr, "bench-peers: -only %q: want throughput, latency or memory\n", *only)
		os.Exit(2)
	}
	if latencyRate < 1 {
		fmt.Fprintf(os.Stderr, "bench-peers: -rate %d: want at least 1 record per second\n", latencyRate)
		os.Exit(2)
	}
	if latencyLinger < 1 {
		fmt.Fprintf(os.Stderr, "bench-peers: -linger-ms %d: want at least 1 ms\n", latencyLinger)
		os.Exit(2)
	}
	if err := run(*duration, *idle, *out, *only, *profile); err != nil {
		fmt.Fprintln(os.Stderr, "bench-peers:", err)
		os.Exit(1)
	}
	if len(shortfalls) > 0 {
		fmt.Fprintf(os.Stderr, "bench-peers: %d phases fell short of their load:\n  %s\n", len(shortfalls), strings.Join(shortfalls, "\n  "))
		os.Exit(1)
	}
}

// tmpfsMagic is Linux's f_type of a tmpfs file system (statfs(2)).
const tmpfsMagic = 0x01021994

// onDisk refuses a run directory on tmpfs: there etcd's and MinIO's fsyncs return at once,
// so neither the floors nor the acks would be durable as the figures say (and a whole
// run writes ~20 GB, to memory).
func onDisk(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Type == tmpfsMagic {
		return fmt.Errorf("%s is on tmpfs, where fsync does nothing: set TMPDIR to a directory on a disk", dir)
	}
	return nil
}

// load is the max-rate producers' window: batch records per request, inFlight requests
// per producer. The default batch is about the kgo phase's (its default: up to 1 MB per
// partition per request, up to 5 requests in flight), so that both clients of the agent
// batch alike; with batches of 100 records the agent, MinIO and etcd spend about twice
// the CPU per record (docs/BENCHMARKS.md, profiling item 18).
var load window

// kafkaFirst puts the Kafka max-rate phase first. By default it runs after the gRPC
// phase, its catch-up read and the idle phase, which leave MinIO's disk and the page
// cache in another state than a fresh start.
var kafkaFirst bool

// latencyRate is the latency phases' records per second (-rate). The JSON keys name 1000,
// the target's rate; latency_rate says which was run.
var latencyRate int

// latencyLinger is the linger, in ms, of the latency phases' topics (-linger-ms).
var latencyLinger int

// minioDrives is how many drives the run's MinIO stores objects on (harness.MinIOOptions).
var minioDrives int

type window struct{ batch, inFlight int }

func (w window) args() []string {
	return []string{"--batch", strconv.Itoa(w.batch), "--in-flight", strconv.Itoa(w.inFlight)}
}

// results is everything measured in one run.
type results struct {
	// MinIODrives is how many drives MinIO stored objects on (-minio-drives).
	MinIODrives int `json:"minio_drives"`
	// LatencyRate is the latency phases' records per second (-rate).
	LatencyRate int `json:"latency_rate"`
	// LatencyLinger is their topics' linger in ms (-linger-ms).
	LatencyLinger int         `json:"latency_linger_ms"`
	Floors        floors      `json:"floors"`
	Throughput    benchReport `json:"produce_max"`
	CatchUp       benchReport `json:"consume_catch_up"`
	Latency       benchReport `json:"produce_1000_per_s"`
	LatencyOne    benchReport `json:"produce_1000_per_s_1_partition"`
	// LatencyOneObjectBytes is the mean flush object of the 1-partition latency phase; its
	// floor is the PUT of the 6-partition phase's mean object.
	LatencyOneObjectBytes float64            `json:"latency_1_partition_mean_object_bytes"`
	EndToEnd              benchReport        `json:"e2e_1000_per_s"`
	Wide                  benchReport        `json:"produce_max_100_partitions"`
	JetStream             jetStream          `json:"jetstream"`
	Cost                  costModel          `json:"cost"`
	RSSMiB                map[string]float64 `json:"agent_peak_rss_mib"`
	// WideMemory: the agent's memory at its largest resident set and at its largest live
	// heap of the 100-partition phase and its merges.
	WideMemory [2]memorySample `json:"produce_max_100_partitions_memory"`
	// KafkaWide and KafkaWideMemory: the same phase over the Kafka protocol (kgo).
	KafkaWide       kafkaReport     `json:"produce_max_kafka_100_partitions"`
	KafkaWideMemory [2]memorySample `json:"produce_max_kafka_100_partitions_memory"`
	// CPUMicrosPerRecord: CPU time of each process during the max-rate produce phase,
	// per record produced.
	CPUMicrosPerRecord map[string]float64 `json:"cpu_us_per_record_max_rate"`
	// CPUMicrosPerRecordSettled: the same from the start of the phase until the merges it
	// caused were done (the index stopped changing, and no fresh segment can be held back
	// any longer: settle), so that merge work left over when the phase ended is counted
	// too, and so is the processes' idle CPU while settle waits (a few ms a second).
	CPUMicrosPerRecordSettled map[string]float64 `json:"cpu_us_per_record_max_rate_settled"`
	// CPUMicrosPerRecordRead is each process's CPU time during the catch-up read, per
	// record read.
	CPUMicrosPerRecordRead map[string]float64 `json:"cpu_us_per_record_catch_up"`
	// Kafka: the max-rate produce over the Kafka protocol (kgo), and the CPU per record of
	// each process during it and its merges ("load generator" is this program: kgo).
	Kafka    kafkaReport        `json:"produce_max_kafka"`
	KafkaCPU map[string]float64 `json:"kafka_cpu_us_per_record_settled"`
	// Writes and KafkaWrites: the segments the max-rate phases wrote over gRPC and Kafka,
	// and what merging them wrote again.
	Writes      writeShape `json:"produce_max_writes"`
	KafkaWrites writeShape `json:"produce_max_kafka_writes"`
	// LatencyStages and LatencyCores: where the time of the 6-partition latency phase
	// went, and the cores of CPU each process used during it.
	LatencyStages map[string]stageStat `json:"produce_1000_per_s_stages"`
	// ThroughputStages: the same for the max-rate phase on 6 partitions.
	ThroughputStages map[string]stageStat `json:"produce_max_stages"`
	LatencyCores     map[string]float64   `json:"produce_1000_per_s_cores"`
	LatencyCounts    phaseCounts          `json:"produce_1000_per_s_counts"`
	// SettleSeconds: how long after the phase the merges went on.
	SettleSeconds float64 `json:"settle_seconds"`
	// IdleWrites names the etcd keys written in the idle phase (event kind, key, count).
	IdleWrites []string `json:"idle_writes"`
	// Shortfalls: the phases whose figures fall short of their load (shortfalls).
	Shortfalls []string `json:"shortfalls,omitempty"`
}

func run(duration, idle time.Duration, out, only, profileDir string) error {
	// Interrupted, the run stops its phases and still removes what it wrote (GBs).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second Ctrl-C ends it at once, its directory left behind
	dir, err := os.MkdirTemp("", "bench-peers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := onDisk(dir); err != nil {
		return err
	}
	ctl, err := harness.Command("streamctl")
	if err != nil {
		return err
	}
	etcd, err := harness.StartEtcd(ctx, dir, harness.EtcdOptions{Fsync: true})
	if err != nil {
		return err
	}
	defer etcd.Stop()
	minio, err := harness.StartMinIOWith(ctx, dir, harness.MinIOOptions{Drives: minioDrives})
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
	var lastWrite time.Time         // when the last phase that wrote ended
	if profileDir != "" {
		if err := os.MkdirAll(profileDir, 0o755); err != nil {
			return err
		}
	}
	prof := &profiler{dir: profileDir, adminAddr: agent.AdminAddr, window: min(duration/2, 8*time.Second)}
	bench := func(args ...string) (benchReport, error) {
		fmt.Fprintf(os.Stderr, "streamctl bench %s\n", strings.Join(args, " "))
		profArgs, profWait := prof.start(phaseName(args))
		defer profWait()
		cmd := exec.CommandContext(ctx, ctl, append(append(append([]string{"--addr", agent.GRPCAddr, "bench"}, args...), profArgs...), "--json", "--progress", "5s")...)
		// Its own process group: a Ctrl-C reaches it from here alone, once (a second would
		// end it before its report), and it dies with this program.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) } // it reports and ends
		cmd.WaitDelay = time.Minute
		cmd.Stderr = os.Stderr
		b, err := cmd.Output()
		if args[0] != "consume" {
			lastWrite = time.Now()
		}
		if cmd.ProcessState != nil {
			lastClientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		var r benchReport
		var exit *exec.ExitError
		switch {
		case err == nil:
			err = json.Unmarshal(b, &r)
		case errors.As(err, &exit) && ctx.Err() == nil && json.Unmarshal(b, &r) == nil && r.StoppedBy == "" && !r.Interrupted:
			// It measured the phase but its figures fall short of the load asked for (behind
			// its rate, records undelivered): the run goes on, and says so.
			shortfalls = append(shortfalls, fmt.Sprintf("streamctl bench %s: %s", strings.Join(args, " "), r.Failure))
			r.short = true
			return r, nil
		}
		if err != nil {
			return r, fmt.Errorf("streamctl bench %v: %w", args, err)
		}
		return r, nil
	}
	d := duration.String()
	var res results
	res.MinIODrives = max(minioDrives, 1)
	res.LatencyRate, res.LatencyLinger = latencyRate, latencyLinger
	res.RSSMiB = map[string]float64{}

	procs := map[string]int{"agent": agent.Process.Pid(), "minio": minio.Process.Pid(), "etcd": etcd.Process.Pid()}
	if only != "latency" {
		ph := phases{ctx: ctx, bench: bench, lastCPU: &lastClientCPU, lastWrite: &lastWrite, procs: procs, metricsURL: metricsURL, duration: d, idle: idle, etcdEndpoint: etcd.Endpoint}
		if kafkaFirst && only != "memory" {
			if err := ph.kafka(ctx, &res, agent.KafkaAddr, duration); err != nil {
				return err
			}
		}
		if done, err := ph.throughput(&res, only, out); done || err != nil {
			return err
		}
		if only == "memory" {
			// The catch-up read filled the block cache, as in a whole run: on to the
			// 100 partitions.
			return ph.wide(ctx, &res, agent.Process.Pid(), agent.KafkaAddr, duration, out)
		}
		if !kafkaFirst {
			if err := ph.kafka(ctx, &res, agent.KafkaAddr, duration); err != nil {
				return err
			}
		}
	}

	// Latency at a fixed 1000 records/s (-rate) with the default 5 ms linger (-linger-ms), then end to end; each
	// after the merges of the phase before it are done.
	latency := []struct {
		r    *benchReport
		args []string
	}{
		{&res.Latency, []string{"produce", "--topic", "lat", "--partitions", "6"}},
		{&res.LatencyOne, []string{"produce", "--topic", "lat1", "--partitions", "1"}},
		{&res.EndToEnd, []string{"e2e", "--topic", "e2e", "--partitions", "6"}},
	}
	if only == "latency" {
		latency = latency[:2]
	}
	var latencyObjectBytes float64 // the mean flush object of the first
	var latencyBefore sample       // the scrape before the first
	for i, l := range latency {
		pre, _, err := settle(ctx, metricsURL, lastWrite)
		if err != nil {
			return err
		}
		switch i {
		case 0:
			latencyBefore = pre
		case 1:
			// The first phase, 6 partitions, with the merges it caused done.
			res.Cost.LatencyRate = loadCostOf(latencyBefore, pre, *res.Latency.Produce, res.Latency.Seconds, 6)
		}
		cpuBefore, err := cpuTimes(procs)
		if err != nil {
			return err
		}
		start := time.Now()
		if *l.r, err = bench(append(l.args, "--linger-ms", strconv.Itoa(latencyLinger), "--record-size", "1024", "--rate", strconv.Itoa(latencyRate), "--batch", "1", "--duration", d)...); err != nil {
			return err
		}
		if i == 1 {
			post, err := scrape(metricsURL)
			if err != nil {
				return err
			}
			res.LatencyOneObjectBytes = meanFlushObject(pre, post)
		}
		if i == 0 {
			post, err := scrape(metricsURL)
			if err != nil {
				return err
			}
			latencyObjectBytes = meanFlushObject(pre, post)
			res.LatencyStages = stages(pre, post)
			res.LatencyCounts = countsBetween(pre, post)
			cpuAfter, err := cpuTimes(procs)
			if err != nil {
				return err
			}
			// CPU µs per µs of wall time: cores.
			res.LatencyCores = cpuPer(cpuBefore, cpuAfter, float64(time.Since(start).Microseconds()))
			res.LatencyCores["load generator"] = float64(lastClientCPU) / float64(time.Since(start))
		}
	}
	if only == "latency" {
		if err := agent.Stop(); err != nil {
			return err
		}
		if res.Floors, err = measureFloors(ctx, dir, etcd, minio, latencyObjectBytes, latencyObjectBytes); err != nil {
			return err
		}
		printTargetHeader(os.Stdout)
		printLatency(os.Stdout, res)
		fmt.Println()
		printStages(os.Stdout, res)
		fmt.Println()
		fmt.Println("| floor | value |")
		fmt.Println("|---|---|")
		printMinIOCost(os.Stdout, res.Floors)
		fmt.Println()
		printLoadCosts(os.Stdout, []column{{fmt.Sprintf("at %d rec/s (requests of 1, linger %d ms)", res.LatencyRate, res.LatencyLinger), res.Cost.LatencyRate}})
		return writeJSON(out, res)
	}
	ph := phases{ctx: ctx, bench: bench, lastWrite: &lastWrite, metricsURL: metricsURL, duration: d}
	if err := ph.widePhase(&res, agent.Process.Pid()); err != nil {
		return err
	}
	if err := ph.kafkaWidePhase(ctx, &res, agent.Process.Pid(), agent.KafkaAddr, duration); err != nil {
		return err
	}
	last, err := scrape(metricsURL)
	if err != nil {
		return err
	}
	res.Cost.countSweeps(last)
	// The agent is done: stopped, so that neither the floors nor JetStream share the
	// cores with it.
	if err := agent.Stop(); err != nil {
		return err
	}

	// The floors, at the object sizes the throughput and latency phases wrote.
	if res.Floors, err = measureFloors(ctx, dir, etcd, minio, res.Cost.MaxRate.MeanObjectBytes, latencyObjectBytes); err != nil {
		return err
	}
	if err := etcd.Stop(); err != nil {
		return err
	}
	if err := minio.Stop(); err != nil {
		return err
	}
	if res.JetStream, err = runJetStream(ctx, dir, duration, int(res.Throughput.Produce.Records)); err != nil {
		return err
	}
	printTable(os.Stdout, res)
	fmt.Println()
	printMemory(os.Stdout, widePhaseName, res.WideMemory)
	printMemory(os.Stdout, kafkaWidePhaseName, res.KafkaWideMemory)
	return writeJSON(out, res)
}

func writeJSON(path string, res results) error {
	if path == "" {
		return nil
	}
	res.Shortfalls = shortfalls
	b, _ := json.MarshalIndent(res, "", "  ")
	return os.WriteFile(path, b, 0o644)
}

// settle waits until the agent's merges of what was written up to lastWrite are done:
// settlePasses compaction passes ended with no segment merged or removed in between (a
// merge running when the phase ended keeps its pass from ending), or none ended in
// settleNoPass (compaction is off); at most settleMax. Passes count only from
// actors.MergeHoldMax after lastWrite: until then the fresh segments of a partition that
// was busy may still be held back for a merge. It returns the last scrape and when the
// last change was seen (zero if none was).
func settle(ctx context.Context, metricsURL string, lastWrite time.Time) (last sample, changedAt time.Time, err error) {
	const settlePasses, settleNoPass, settleMax = 3, 10 * time.Second, 3 * time.Minute
	deadline := time.Now().Add(settleMax)
	changed := func(a, b sample) bool {
		return a.sum("streamhouse_merged_segments_total") != b.sum("streamhouse_merged_segments_total") ||
			a.sum("streamhouse_retention_removed_segments_total") != b.sum("streamhouse_retention_removed_segments_total")
	}
	quiet, err := scrape(metricsURL) // the scrape since which nothing changed
	if err != nil {
		return nil, changedAt, err
	}
	quietAt := time.Now()
	for {
		if time.Now().After(deadline) {
			return nil, changedAt, fmt.Errorf("merges still running %s after the phase", settleMax)
		}
		select {
		case <-ctx.Done():
			return nil, changedAt, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		s, err := scrape(metricsURL)
		if err != nil {
			return nil, changedAt, err
		}
		passes := s.sum("streamhouse_compaction_pass_seconds") - quiet.sum("streamhouse_compaction_pass_seconds")
		if changed(quiet, s) {
			changedAt = time.Now()
		}
		switch {
		case changed(quiet, s) || time.Since(lastWrite) < actors.MergeHoldMax:
			quiet, quietAt = s, time.Now()
		case passes >= settlePasses:
			return s, changedAt, nil
		case passes == 0 && time.Since(quietAt) > settleNoPass:
			return s, changedAt, nil // compaction is off (or one pass takes that long)
		}
	}
}

// phases is what every phase of a run uses.
type phases struct {
	ctx          context.Context                           // the run's: ends at Ctrl-C
	bench        func(args ...string) (benchReport, error) // runs streamctl bench
	lastCPU      *time.Duration                            // of the last streamctl bench
	lastWrite    *time.Time                                // when the last phase that wrote ended
	procs        map[string]int                            // pids whose CPU time is counted
	metricsURL   string                                    // the agent's /metrics
	duration     string                                    // of a load phase
	idle         time.Duration
	etcdEndpoint string // watched while idle
}

// throughput runs the max-rate produce phase at 1 KiB, then (unless only is "throughput")
// the catch-up read of what it wrote and an idle phase, with the store and etcd counts of
// each for the cost model (the writes' counts include the merges they caused). done says
// the run ends here.
func (ph phases) throughput(res *results, only, out string) (done bool, err error) {
	bench, procs, metricsURL, d := ph.bench, ph.procs, ph.metricsURL, ph.duration
	cpuBefore, err := cpuTimes(procs)
	if err != nil {
		return false, err
	}
	before, err := scrape(metricsURL)
	if err != nil {
		return false, err
	}
	if res.Throughput, err = bench(append([]string{"produce", "--topic", "tput", "--partitions", "6", "--record-size", "1024", "--producers", "4", "--duration", d}, load.args()...)...); err != nil {
		return false, err
	}
	cpuAfter, err := cpuTimes(procs)
	if err != nil {
		return false, err
	}
	if res.RSSMiB["6_partitions_max_rate"], err = peakRSS(procs["agent"]); err != nil {
		return false, err
	}
	settled, mergedAt, err := settle(ph.ctx, metricsURL, *ph.lastWrite)
	if err != nil {
		return false, err
	}
	res.SettleSeconds = max(mergedAt.Sub(*ph.lastWrite).Seconds(), 0)
	cpuSettled, err := cpuTimes(procs)
	if err != nil {
		return false, err
	}
	res.ThroughputStages = stages(before, settled)
	n := float64(res.Throughput.Produce.Records)
	res.CPUMicrosPerRecord = cpuPer(cpuBefore, cpuAfter, n)
	res.CPUMicrosPerRecordSettled = cpuPer(cpuBefore, cpuSettled, n)
	res.CPUMicrosPerRecord["load generator"] = float64(ph.lastCPU.Microseconds()) / max(n, 1)
	res.CPUMicrosPerRecordSettled["load generator"] = res.CPUMicrosPerRecord["load generator"]
	res.Writes = shapeOf(before, settled)
	fmt.Fprintf(os.Stderr, "max-rate produce: %.0f rec/s; CPU µs per record with its merges: %s\n",
		res.Throughput.Produce.RecordsPerSec, formatCPU(res.CPUMicrosPerRecordSettled))
	if only == "throughput" {
		printQuick(os.Stdout, *res)
		return true, writeJSON(out, *res)
	}
	readBefore, err := cpuTimes(procs)
	if err != nil {
		return false, err
	}
	if res.CatchUp, err = bench("consume", "--topic", "tput", "--duration", "5m"); err != nil {
		return false, err
	}
	readAfter, err := cpuTimes(procs)
	if err != nil {
		return false, err
	}
	nr := float64(res.CatchUp.Consume.Records)
	res.CPUMicrosPerRecordRead = cpuPer(readBefore, readAfter, nr)
	res.CPUMicrosPerRecordRead["load generator"] = float64(ph.lastCPU.Microseconds()) / max(nr, 1)
	fmt.Fprintf(os.Stderr, "catch-up read: %.0f rec/s, %.2f× the max-rate produce; CPU µs per record read: %s\n",
		res.CatchUp.Consume.RecordsPerSec, res.CatchUp.Consume.RecordsPerSec/max(res.Throughput.Produce.RecordsPerSec, 1), formatCPU(res.CPUMicrosPerRecordRead))
	read, err := scrape(metricsURL)
	if err != nil {
		return false, err
	}
	fmt.Fprintf(os.Stderr, "idle for %s\n", ph.idle)
	var lockWrites int
	if res.IdleWrites, lockWrites, err = idleWrites(ph.ctx, ph.etcdEndpoint, ph.idle); err != nil {
		return false, err
	}
	for _, w := range res.IdleWrites {
		fmt.Fprintf(os.Stderr, "  written while idle: %s\n", w)
	}
	idled, err := scrape(metricsURL)
	if err != nil {
		return false, err
	}
	wasWritten := read.byLabel("streamhouse_etcd_writes_total", "method")
	for m, n := range idled.byLabel("streamhouse_etcd_writes_total", "method") {
		if n -= wasWritten[m]; n != 0 {
			fmt.Fprintf(os.Stderr, "  etcd %s writes while idle: %.0f\n", m, n)
		}
	}
	res.Cost = newCostModel(before, settled, read, res.Throughput, res.CatchUp, 6)
	res.Cost.idleCosts(read, idled, lockWrites, ph.idle)

	return false, nil
}

// kafka runs the max-rate produce over the Kafka protocol once the merges of the phases
// before are done, and counts the CPU of every process (this one being the load
// generator: kgo) until its own merges are done.
func (ph phases) kafka(ctx context.Context, res *results, addr string, duration time.Duration) error {
	pre, _, err := settle(ctx, ph.metricsURL, *ph.lastWrite)
	if err != nil {
		return err
	}
	procs := maps.Clone(ph.procs)
	procs["load generator"] = os.Getpid()
	before, err := cpuTimes(procs)
	if err != nil {
		return err
	}
	if res.Kafka, err = kafkaProduce(ctx, addr, "kafka", 6, duration); err != nil {
		return err
	}
	// The load generator's CPU ends with its produce: waiting for the merges below is
	// this program scraping the agent, not kgo.
	generated, err := cpuTimes(map[string]int{"load generator": os.Getpid()})
	if err != nil {
		return err
	}
	*ph.lastWrite = time.Now()
	post, _, err := settle(ctx, ph.metricsURL, *ph.lastWrite)
	if err != nil {
		return err
	}
	res.KafkaWrites = shapeOf(pre, post)
	after, err := cpuTimes(procs)
	if err != nil {
		return err
	}
	after["load generator"] = generated["load generator"]
	res.KafkaCPU = cpuPer(before, after, float64(res.Kafka.Records))
	return nil
}

// cpuPer is each process's CPU time between two readings, in µs per unit: per record
// produced, or per µs of wall time (cores busy).
func cpuPer(before, after map[string]time.Duration, units float64) map[string]float64 {
	out := map[string]float64{}
	for name := range after {
		out[name] = float64((after[name] - before[name]).Microseconds()) / max(units, 1)
	}
	return out
}

// benchReport is the part of `streamctl bench --json` used here.
type benchReport struct {
	Seconds     float64     `json:"seconds"`
	Interrupted bool        `json:"interrupted,omitempty"`
	StoppedBy   string      `json:"stopped_by,omitempty"`
	Produce     *sideReport `json:"produce,omitempty"`
	Consume     *sideReport `json:"consume,omitempty"`
	E2E         *latency    `json:"e2e_latency_ms,omitempty"`
	// Failure is why streamctl bench exited non-zero (its report's failure).
	Failure string `json:"failure,omitempty"`
	short   bool   // its streamctl bench fell short of the load (shortfalls)
}

// shortfalls lists the phases whose streamctl bench exited non-zero for figures that
// fall short of their load (benchReport.Failure): they are kept and printed, and the run
// ends non-zero.
var shortfalls []string

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
func peakRSS(pid int) (float64, error) { return procStatusMiB(pid, "VmHWM") }

// formatCPU prints a cpuPer map in a fixed order, with its total.
func formatCPU(m map[string]float64) string {
	var b strings.Builder
	total := 0.0
	for _, name := range []string{"agent", "minio", "etcd", "load generator"} {
		fmt.Fprintf(&b, "%s %.1f, ", name, m[name])
		total += m[name]
	}
	fmt.Fprintf(&b, "all %.1f", total)
	return b.String()
}
