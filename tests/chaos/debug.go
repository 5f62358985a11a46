package chaos

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// logAgentsSince logs each agent's warnings, errors, session, rebalancing and partition
// lines since from (CHAOS_DEBUG, and after any fault not recovered from): what the agents
// went through during a fault.
func logAgentsSince(t *testing.T, c *cluster, from time.Time) {
	t.Helper()
	for _, a := range c.agents {
		for _, line := range strings.Split(a.Process.LogTail(1<<20), "\n") {
			interesting := strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) ||
				strings.Contains(line, "session") || strings.Contains(line, "rebalanc") ||
				strings.Contains(line, "partition") || strings.Contains(line, "writer")
			if interesting && logTime(line).After(from) {
				t.Logf("  %s %s", a.Config.Node, line[:min(len(line), 300)])
			}
		}
	}
}

// logTime reads the "ts" (Unix seconds) of a JSON log line; zero if it has none.
func logTime(line string) time.Time {
	_, rest, ok := strings.Cut(line, `"ts":`)
	if !ok {
		return time.Time{}
	}
	end := strings.IndexAny(rest, ",}")
	f, err := strconv.ParseFloat(rest[:max(end, 0)], 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(0, int64(f*1e9))
}
