package main

import (
	"bytes"
	"strings"
	"testing"
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
		{[]string{"agent", "--store", "file:///tmp/x", "--recent-bytes", "0"}, 2, "must be positive"},
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
