package dev_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/tests/harness"
)

// kcat runs Debian's kcat (librdkafka) against the dev cluster's Kafka listener.
func (d *devCluster) kcat(stdin string, args ...string) string {
	d.t.Helper()
	bin, err := exec.LookPath("kcat")
	if err != nil {
		d.t.Fatal("kcat is not installed: `make tools` installs it from Debian's packages")
	}
	cmd := exec.Command("timeout", append([]string{"60", bin, "-b", d.kafka}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		d.t.Fatalf("kcat %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestKcatFromTheShell lists metadata, produces and consumes with kcat, as one would from
// a shell, and sees the same records through streamctl (gRPC) and the other way round; a
// kcat consumer group's offsets show in `streamctl group offsets`.
func TestKcatFromTheShell(t *testing.T) {
	d := startDev(t, t.TempDir())
	d.must("", "topic", "create", "clicks", "--partitions", "3")
	md := d.kcat("", "-L", "-t", "clicks")
	if !strings.Contains(md, `topic "clicks" with 3 partitions`) || !strings.Contains(md, "1 brokers") {
		t.Fatalf("kcat -L:\n%s", md)
	}

	var in strings.Builder
	for i := range 30 {
		fmt.Fprintf(&in, "user-%d:click-%d\n", i%5, i)
	}
	d.kcat(in.String(), "-P", "-t", "clicks", "-K:", "-z", "lz4")
	d.must("from-grpc\n", "produce", "clicks", "--key", "user-9")

	out := d.kcat("", "-C", "-t", "clicks", "-o", "beginning", "-e", "-q", "-f", "%p %o %k %s\n")
	got := map[string]string{} // value -> partition
	for _, l := range lines(out) {
		var p, o int
		var k, v string
		if _, err := fmt.Sscan(l, &p, &o, &k, &v); err != nil {
			t.Fatalf("kcat -C line %q: %v", l, err)
		}
		if _, dup := got[v]; dup {
			t.Fatalf("%s consumed twice", v)
		}
		got[v] = fmt.Sprintf("%s@%d", k, p)
	}
	if len(got) != 31 || got["from-grpc"] == "" {
		t.Fatalf("kcat consumed %d records (%v), want 31 with the one produced over gRPC", len(got), got)
	}
	// Records of one key share a partition, whoever produced them.
	keyPart := map[string]string{}
	for _, kp := range got {
		k, p, _ := strings.Cut(kp, "@")
		if q, ok := keyPart[k]; ok && q != p {
			t.Fatalf("key %s in partitions %s and %s", k, p, q)
		}
		keyPart[k] = p
	}
	grpcOut := d.must("", "consume", "clicks", "--from", "earliest", "--limit", "31")
	if n := len(lines(grpcOut)); n != 31 || !strings.Contains(grpcOut, "click-29") {
		t.Fatalf("streamctl consume read %d records:\n%s", n, grpcOut)
	}

	d.kcat("", "-G", "shell-group", "-X", "auto.offset.reset=earliest", "-e", "-q", "clicks")
	harness.Eventually(t, 30*time.Second, func() error {
		out := d.must("", "group", "offsets", "shell-group")
		total := 0
		for _, l := range lines(out)[1:] {
			var topic string
			var p, off, hwm, lag int
			if _, err := fmt.Sscan(l, &topic, &p, &off, &hwm, &lag); err != nil {
				return fmt.Errorf("%q: %v", l, err)
			}
			if lag != 0 {
				return fmt.Errorf("lag %d on %d:\n%s", lag, p, out)
			}
			total += off
		}
		if total != 31 {
			return fmt.Errorf("committed %d of 31:\n%s", total, out)
		}
		return nil
	})
}
