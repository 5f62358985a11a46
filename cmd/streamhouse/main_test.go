package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestCommands(t *testing.T) {
	for _, c := range []struct {
		args     []string
		code     int
		contains string
	}{
		{[]string{"version"}, 0, "streamhouse "},
		{[]string{"--help"}, 0, "streamhouse dev"},
		{nil, 2, "Usage:"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"dev", "--agents", "0"}, 2, "--agents 0"},
		{[]string{"agent"}, 2, "--store"},
		{[]string{"agent", "--store", "file:///tmp/x", "--session-ttl", "100ms"}, 2, "at least 1s"},
		{[]string{"agent", "--store", "file:///tmp/x", "--recent-bytes", "0"}, 2, "--recent-bytes 0: must be positive"},
		{[]string{"agent", "--store", "file:///tmp/x", "--max-uploads", "0"}, 2, "--max-uploads 0: must be positive"},
		{[]string{"agent", "--store", "file:///tmp/x", "--sweep-interval", "-1s"}, 2, "--sweep-interval -1s: 0 (a quarter of the grace) or more"},
		{[]string{"agent", "--store", "file:///tmp/x", "--sweep-grace", "1m"}, 2, "--sweep-grace 1m0s: 0 or at least 3m0s"},
		{[]string{"agent", "--store", "file:///tmp/x", "--shutdown-timeout", "-1s"}, 2, "--shutdown-timeout -1s: must be positive"},
		{[]string{"agent", "--store", "file:///tmp/x", "--merge-link-bytes", "-7"}, 2, "--merge-link-bytes -7"},
		{[]string{"agent", "--store", "file:///tmp/x", "--node", "a/b"}, 2, `--node "a/b"`},
		{[]string{"agent", "--store", "file:///tmp/x", "--kafka-frame-timeout", "0s"}, 2, "--kafka-frame-timeout 0s: must be positive"},
		{[]string{"agent", "--store", "file:///tmp/x", "--kafka-idle-timeout", "-1s"}, 2, "--kafka-idle-timeout -1s: must be positive"},
		{[]string{"agent", "--store", "file:///tmp/x", "--kafka-max-group-members", "0"}, 2, "--kafka-max-group-members 0: must be positive"},
		// A record past a segment block's bound would be acked, then refused as corrupt by every read.
		{[]string{"agent", "--store", "file:///tmp/x", "--max-record-bytes", "67108815", "--max-batch-bytes", "134217728", "--kafka-max-request-bytes", "134217728"}, 2, "--max-record-bytes 67108815: at most 67108814"},
		{[]string{"agent", "--store", "file:///tmp/x", "--max-fetch-bytes", "3000000000"}, 2, "--max-fetch-bytes 3000000000: at most 2147483647"},
		// Kafka clients were told of no broker, and the agent crashed on their Metadata.
		{[]string{"agent", "--store", "file:///tmp/x", "--kafka-advertise", "kafka.example.com"}, 2, `--kafka-advertise "kafka.example.com": want host:port`},
		{[]string{"agent", "--store", "file:///tmp/x", "--kafka-advertise", ":9092"}, 2, "not none or a wildcard"},
		{[]string{"agent", "--store", "file:///tmp/x", "--cluster-advertise", "h:0"}, 2, `--cluster-advertise "h:0": want a port of 1-65535`},
	} {
		var out bytes.Buffer
		if code := run(c.args, &out, &out); code != c.code || !strings.Contains(out.String(), c.contains) {
			t.Errorf("streamhouse %v: exit %d, output %q; want exit %d and %q", c.args, code, out.String(), c.code, c.contains)
		}
	}
}

// A STREAMHOUSE_* variable that does not parse fails the agent's start, naming it, as a
// bad flag does; it was taken as unset, and the default used in silence.
func TestBadEnvironmentIsAnError(t *testing.T) {
	for env, v := range map[string]string{"STREAMHOUSE_MAX_READ_BYTES": "64MiB", "STREAMHOUSE_SESSION_TTL": "5"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, v)
			var out bytes.Buffer
			if code := run([]string{"agent", "--store", "file:///tmp/x"}, &out, &out); code != 2 || !strings.Contains(out.String(), "$"+env) {
				t.Fatalf("agent with $%s=%q: exit %d, output %q; want exit 2 naming it", env, v, code, out.String())
			}
		})
	}
}

// TestAwaitEtcdNamesAnEtcdThatDoesNotAnswer: the client dials without waiting, so an etcd
// that is not there would show only as a start that hangs, then a bare deadline.
func TestAwaitEtcdNamesAnEtcdThatDoesNotAnswer(t *testing.T) {
	etcd, err := dialEtcd([]string{"127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err = awaitEtcd(ctx, etcd, "127.0.0.1:1", "/streamhouse/", zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "etcd 127.0.0.1:1 did not answer") || time.Since(start) > 5*time.Second {
		t.Fatalf("awaiting an etcd that is not there: %v after %v", err, time.Since(start))
	}
}

// The cluster address an agent advertises by default, derived from --cluster-listen, is
// one other agents can dial, IPv6 included, and is not held to the checks of one the
// user gives (port 0, a port the listener picks, is for it to fill in).
func TestTheDerivedClusterAddressIsDialable(t *testing.T) {
	for listen, want := range map[string]string{"[::1]:7946": "[::1]:7946", "127.0.0.1:7946": "127.0.0.1:7946", "127.0.0.1:0": "127.0.0.1:0"} {
		f, err := parseAgentFlags([]string{"--store", "file:///tmp/x", "--cluster-listen", listen}, io.Discard)
		if err != nil {
			t.Errorf("--cluster-listen %s: %v", listen, err)
		} else if f.advertise != want {
			t.Errorf("--cluster-listen %s: advertises %q, want %q", listen, f.advertise, want)
		}
	}
}

// The original StreamHouse's $STREAMHOUSE_BUCKET stands for --store s3://BUCKET (its
// endpoint from $AWS_ENDPOINT_URL); --store and $STREAMHOUSE_STORE_URL win over it.
func TestTheOriginalsBucketVariableNamesTheStore(t *testing.T) {
	t.Setenv(BucketEnv, "streamhouse-data")
	t.Setenv("STREAMHOUSE_STORE_URL", "")
	f, err := parseAgentFlags([]string{}, io.Discard)
	if err != nil {
		t.Fatalf("with $%s only: %v", BucketEnv, err)
	}
	if f.store != "s3://streamhouse-data" {
		t.Fatalf("with $%s only: store %q", BucketEnv, f.store)
	}
	if f, err = parseAgentFlags([]string{"--store", "file:///tmp/x"}, io.Discard); err != nil || f.store != "file:///tmp/x" {
		t.Fatalf("with --store too: %+v, %v", f, err)
	}
}
