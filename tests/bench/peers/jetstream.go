package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/streamhouse/streamhouse/tests/harness"
)

// jetStream holds NATS JetStream's figures for 1 KiB messages on file storage.
type jetStream struct {
	// AsyncMsgsPerSec: 4 clients publishing asynchronously, JetStream's default
	// durability (acked once written to the OS, fsynced every 2 minutes).
	AsyncMsgsPerSec float64 `json:"async_msgs_per_sec"`
	// AsyncMsgs: the messages of that phase, as many as StreamHouse's max-rate phase acked.
	// It runs with nats bench, each client publishing a batch before it waits for all of
	// its acks, once with nats bench's default batch and once with streamctl's window
	// (AsyncByBatch, msg/s by batch); and with nats.go's PublishAsync keeping streamctl's
	// window unacked, refilled as acks come, as streamctl does (WindowMsgsPerSec,
	// windowPublish). AsyncMsgsPerSec is the fastest of the three; AsyncBatch the batch of
	// the fastest, 0 when it is the sliding window.
	AsyncMsgs        int             `json:"async_msgs"`
	AsyncBatch       int             `json:"async_batch"`
	AsyncByBatch     map[int]float64 `json:"async_msgs_per_sec_by_batch"`
	WindowMsgsPerSec float64         `json:"window_msgs_per_sec"`
	Window           int             `json:"window"`
	// AsyncSyncAlwaysMsgsPerSec: the same with sync_interval: always (fsync before ack),
	// the durability StreamHouse's acks have (MinIO and etcd both fsync).
	AsyncSyncAlwaysMsgsPerSec float64 `json:"async_sync_always_msgs_per_sec"`
	// SyncP50Ms, SyncP99Ms: one client publishing synchronously (default durability).
	SyncP50Ms float64 `json:"sync_publish_p50_ms"`
	SyncP99Ms float64 `json:"sync_publish_p99_ms"`
}

var (
	aggregated = regexp.MustCompile(`aggregated stats: ([\d,]+) msgs/sec`)
	// "P50: 153.45us ~ P90: 251.48us ~ P99: 529.58us" for one client; "P50 …us | P90 …"
	// in the aggregate of several.
	latencies = regexp.MustCompile(`P50:? ([\d,.]+)us[ ~|]+P90:? [\d,.]+us[ ~|]+P99:? ([\d,.]+)us`)
)

// minJetStreamMsgs is the least the async phase publishes.
const minJetStreamMsgs = 100_000

// natsDefaultBatch is nats bench's own batch (natscli v0.5.0); maxNATSBatch is the most
// a client may have unacked before nats.go's PublishAsync waits (its default
// PublishAsyncMaxPending).
const (
	natsDefaultBatch = 500
	maxNATSBatch     = 4000
)

// jetStreamBatches are the batches the async phase runs with: nats bench's default, and as
// many records as each of streamctl's 4 producers may have unacked in the max-rate phase
// (-in-flight requests of -batch records), so that JetStream is not held to a window
// smaller than StreamHouse's, nor to one that does not suit it.
func jetStreamBatches() []int {
	window := jetStreamWindow()
	if window == natsDefaultBatch {
		return []int{natsDefaultBatch}
	}
	return []int{natsDefaultBatch, window}
}

// jetStreamWindow is as many records as each of streamctl's 4 producers may have unacked
// in the max-rate phase (-in-flight requests of -batch records), within nats.go's
// default bound.
func jetStreamWindow() int { return min(load.inFlight*load.batch, maxNATSBatch) }

// runJetStream measures JetStream; its async phase publishes msgs messages (the records
// StreamHouse's max-rate phase acked, so that both do the same work and a rate that
// falls as a stream grows counts alike).
func runJetStream(ctx context.Context, dir string, duration time.Duration, msgs int) (jetStream, error) {
	js := jetStream{AsyncMsgs: max(msgs, minJetStreamMsgs), AsyncByBatch: map[int]float64{}}
	// asyncPub publishes n messages with 4 clients, each batch messages before it waits.
	asyncPub := func(url string, n, batch int) (float64, error) {
		// The stream holds every message: nats bench's default limit of 1 GB refused the
		// messages of phases longer than 20s. 2 KB a message covers its headers.
		maxBytes := fmt.Sprintf("%dMB", n*2/1000+64)
		out, err := natsBench(ctx, url, "js", "pub", "async", "bench.async", "--create", "--storage", "file", "--size", "1KB",
			"--msgs", strconv.Itoa(n), "--clients", "4", "--batch", strconv.Itoa(batch), "--purge", "--maxbytes", maxBytes)
		if err != nil {
			return 0, err
		}
		return parseRate(out)
	}
	for _, always := range []bool{false, true} {
		url, stop, err := startNATS(ctx, dir, always)
		if err != nil {
			return js, err
		}
		if always {
			// fsync per ack is slower: fewer messages, nats bench's batch.
			js.AsyncSyncAlwaysMsgsPerSec, err = asyncPub(url, int(5_000*duration.Seconds()/2), natsDefaultBatch)
		} else {
			for _, batch := range jetStreamBatches() {
				var rate float64
				if rate, err = asyncPub(url, js.AsyncMsgs, batch); err != nil {
					break
				}
				js.AsyncByBatch[batch] = rate
				if rate > js.AsyncMsgsPerSec {
					js.AsyncMsgsPerSec, js.AsyncBatch = rate, batch
				}
			}
			if err == nil {
				js.Window = jetStreamWindow()
				js.WindowMsgsPerSec, err = windowPublish(ctx, url, js.AsyncMsgs, 4, js.Window, 1024)
				if err == nil && js.WindowMsgsPerSec > js.AsyncMsgsPerSec {
					js.AsyncMsgsPerSec, js.AsyncBatch = js.WindowMsgsPerSec, 0
				}
			}
		}
		if err == nil && !always {
			var out string
			out, err = natsBench(ctx, url, "js", "pub", "sync", "bench.sync", "--create", "--storage", "file", "--size", "1KB",
				"--msgs", "5000", "--clients", "1", "--purge", "--stream", "benchsync")
			if err == nil {
				m := latencies.FindStringSubmatch(out)
				if m == nil {
					err = fmt.Errorf("no latencies in nats bench output:\n%s", out)
				} else {
					js.SyncP50Ms, js.SyncP99Ms = usToMs(m[1]), usToMs(m[2])
				}
			}
		}
		stop()
		if err != nil {
			return js, err
		}
	}
	return js, nil
}

// startNATS starts nats-server with JetStream on a free port, its store in dir.
func startNATS(ctx context.Context, dir string, syncAlways bool) (url string, stop func(), err error) {
	bin, err := harness.Binary("nats-server")
	if err != nil {
		return "", nil, err
	}
	port, err := harness.FreePort()
	if err != nil {
		return "", nil, err
	}
	name := fmt.Sprintf("nats-%d", port)
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream {\n  store_dir: %q\n", port, filepath.Join(dir, name))
	if syncAlways {
		conf += "  sync_interval: always\n"
	}
	conf += "}\n"
	confPath := filepath.Join(dir, name+".conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return "", nil, err
	}
	p, err := harness.StartProcess(name, bin, []string{"-c", confPath}, nil, filepath.Join(dir, name+".log"))
	if err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = p.Stop(5 * time.Second)
			return "", nil, fmt.Errorf("nats-server on %s: %w\n%s", addr, err, p.LogTail(2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "nats://" + addr, func() { _ = p.Stop(10 * time.Second) }, nil
}

func natsBench(ctx context.Context, url string, args ...string) (string, error) {
	bin, err := harness.Binary("nats")
	if err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "nats bench %s\n", strings.Join(args, " "))
	// --timeout bounds each wait for a batch's acks (nats' default 5 s: a batch of 2000
	// fsynced one by one may take longer on a slow disk).
	cmd := exec.CommandContext(ctx, bin, append([]string{"-s", url, "--timeout", "2m", "bench"}, append(args, "--no-progress")...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("nats bench %v: %w\n%s", args, err, out)
	}
	return string(out), nil
}

func parseRate(out string) (float64, error) {
	m := aggregated.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no aggregated rate in nats bench output:\n%s", out)
	}
	return strconv.ParseFloat(strings.ReplaceAll(m[1], ",", ""), 64)
}

func usToMs(s string) float64 {
	v, _ := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
	return v / 1000
}
