// Command soak measures what retention, segment merging and etcd compaction keep bounded
// (docs/operations.md "Retention and merging", issue "Retention"): one agent on a real etcd
// (auto-compaction as in compose) and a real MinIO takes continuous produce at linger 5 ms
// for -duration, and every -every the program records the segment keys per partition,
// the tombstones, etcd's keys and database size (total and in use), the segments the
// agent committed so far (what the index would hold without merging) and the log start.
// It prints the curve as a Markdown table and writes it as JSON.
//
//	go run ./tests/bench/soak -duration 10m -rate 6000 -retention 3m
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// etcdCompaction is the auto-compaction of deploy/compose and `streamhouse dev`.
var etcdCompaction = []string{"--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1m"}

type sample struct {
	At            string  `json:"at"`
	Committed     float64 `json:"segments_committed"` // by the writer: the index without merging
	KeysMax       int64   `json:"segment_keys_max_per_partition"`
	KeysMean      float64 `json:"segment_keys_mean_per_partition"`
	Tombstones    int64   `json:"tombstones"`
	EtcdKeys      int64   `json:"etcd_keys"`
	DBMiB         float64 `json:"etcd_db_mib"`
	DBInUseMiB    float64 `json:"etcd_db_in_use_mib"`
	LogStart      int64   `json:"log_start_p0"`
	HWM           int64   `json:"hwm_p0"`
	StoredMiB     float64 `json:"stored_mib_p0"`
	MergedBytes   float64 `json:"merged_mib"`
	UploadedBytes float64 `json:"uploaded_mib"`
}

func main() {
	duration := flag.Duration("duration", 10*time.Minute, "how long to produce")
	every := flag.Duration("every", 30*time.Second, "sampling interval")
	rate := flag.Int("rate", 6000, "records/s (1 KiB each) over all partitions")
	partitions := flag.Int("partitions", 6, "partitions")
	retention := flag.Duration("retention", 3*time.Minute, "retention of the topic (0: the default, 7 days)")
	out := flag.String("json", "", "write the samples here as JSON")
	flag.Parse()
	if err := run(*duration, *every, *rate, *partitions, *retention, *out); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(duration, every time.Duration, rate, partitions int, retention time.Duration, out string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctl, err := harness.Command("streamctl")
	if err != nil {
		return err
	}
	etcd, err := harness.StartEtcd(ctx, dir, harness.EtcdOptions{Fsync: true, ExtraArgs: etcdCompaction})
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
		Node: "soak-1", Zone: "local", Etcd: etcd.Endpoint, EtcdRoot: coordination.DefaultRoot,
		StoreURL: "s3://soak?create_bucket=true&endpoint=" + minio.Endpoint,
		Env:      []string{"AWS_ACCESS_KEY_ID=" + minio.AccessKey, "AWS_SECRET_ACCESS_KEY=" + minio.SecretKey, "AWS_REGION=us-east-1"},
	})
	if err != nil {
		return err
	}
	defer agent.Stop()
	e, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer e.Close()
	coord, err := coordination.New(e, coordination.Options{})
	if err != nil {
		return err
	}
	const topic = "soak"
	spec := coordination.TopicSpec{Name: topic, Partitions: int32(partitions), LingerMs: 5}
	if retention > 0 {
		spec.RetentionMs = retention.Milliseconds()
	}
	if _, err := coord.CreateTopic(ctx, spec); err != nil {
		return err
	}
	bench := exec.Command(ctl, "--addr", agent.GRPCAddr, "bench", "produce", "--topic", topic, "--rate", strconv.Itoa(rate),
		"--batch", "10", "--record-size", "1024", "--duration", duration.String(), "--progress", "0")
	bench.Stdout, bench.Stderr = os.Stderr, os.Stderr                    // its report too: the samples go to stdout
	bench.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with this program
	if err := bench.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- bench.Wait() }()
	fmt.Fprintf(os.Stderr, "soak: %d records/s of 1 KiB over %d partitions, linger 5 ms, retention %v, for %v\n", rate, partitions, retention, duration)
	var samples []sample
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	var benchErr error // kept until the samples so far are printed
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				benchErr = fmt.Errorf("streamctl bench (its report on stderr above the table): %w", err)
			}
			finished = true
		case <-tick.C:
		}
		s, err := take(ctx, coord, e, etcd.Endpoint, "http://"+agent.AdminAddr+"/metrics", topic, partitions)
		if err != nil {
			return errors.Join(benchErr, err)
		}
		s.At = time.Since(start).Round(time.Second).String()
		samples = append(samples, s)
		fmt.Fprintf(os.Stderr, "soak: %+v\n", s)
	}
	printTable(samples, rate, partitions, retention, duration)
	if out != "" {
		b, _ := json.MarshalIndent(samples, "", "  ")
		if err := os.WriteFile(out, b, 0o644); err != nil {
			return errors.Join(benchErr, err)
		}
	}
	return benchErr
}

func take(ctx context.Context, coord *coordination.Client, e *clientv3.Client, endpoint, metricsURL, topic string, partitions int) (sample, error) {
	var s sample
	keys := coord.Keys()
	var total int64
	for p := range int32(partitions) {
		resp, err := e.Get(ctx, keys.Segments(topic, p), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return s, err
		}
		s.KeysMax = max(s.KeysMax, resp.Count)
		total += resp.Count
	}
	s.KeysMean = float64(total) / float64(partitions)
	for _, c := range []struct {
		prefix string
		n      *int64
	}{{keys.Tombstones(), &s.Tombstones}, {"", &s.EtcdKeys}} {
		resp, err := e.Get(ctx, c.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return s, err
		}
		*c.n = resp.Count
	}
	st, err := e.Status(ctx, strings.TrimPrefix(endpoint, "http://"))
	if err != nil {
		return s, err
	}
	s.DBMiB, s.DBInUseMiB = float64(st.DbSize)/(1<<20), float64(st.DbSizeInUse)/(1<<20)
	ps, err := coord.PartitionStats(ctx, topic, 0)
	if err != nil {
		return s, err
	}
	s.LogStart, s.HWM, s.StoredMiB = ps.LogStart, ps.HWM, float64(ps.StoredBytes)/(1<<20)
	m, err := scrape(metricsURL)
	if err != nil {
		return s, err
	}
	s.Committed = m[`streamhouse_commits_total{result="ok"}`]
	s.MergedBytes = m[`streamhouse_merged_bytes_total{topic="`+topic+`"}`] / (1 << 20)
	s.UploadedBytes = m[`streamhouse_segment_bytes_total{kind="compressed"}`] / (1 << 20)
	return s, nil
}

// scrape reads a Prometheus text exposition into series name{labels} → value.
func scrape(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

func printTable(samples []sample, rate, partitions int, retention, duration time.Duration) {
	fmt.Printf("Soak: %d records/s of 1 KiB, %d partitions, linger 5 ms, retention %v, %v; etcd auto-compaction periodic 1m\n\n", rate, partitions, retention, duration)
	fmt.Println("| time | segments committed | segment keys per partition (max / mean) | tombstones | etcd keys | etcd db MiB (in use) | p0 log start .. hwm | p0 stored MiB | merged / uploaded MiB |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, s := range samples {
		fmt.Printf("| %s | %.0f | %d / %.1f | %d | %d | %.1f (%.1f) | %d .. %d | %.1f | %.0f / %.0f |\n", s.At, s.Committed, s.KeysMax, s.KeysMean,
			s.Tombstones, s.EtcdKeys, s.DBMiB, s.DBInUseMiB, s.LogStart, s.HWM, s.StoredMiB, s.MergedBytes, s.UploadedBytes)
	}
}
