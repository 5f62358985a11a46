package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/streamhouse/streamhouse/tests/harness"
)

// profiler takes CPU profiles of each load phase when -profile names a directory: the
// load generator's over its whole run (streamctl bench --cpuprofile) and the agent's
// (its /debug/pprof/profile) over a window inside the phase, since the agent's profile
// must be asked for with its length up front.
type profiler struct {
	dir       string
	adminAddr string
	window    time.Duration // of the agent's profile, started a second into the phase
	n         int
}

// start returns the extra streamctl arguments of phase name, and a wait that returns
// once the agent's profile is written.
func (p *profiler) start(name string) (args []string, wait func()) {
	if p.dir == "" {
		return nil, func() {}
	}
	p.n++
	base := filepath.Join(p.dir, fmt.Sprintf("%02d-%s", p.n, name))
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(time.Second)
		if err := p.agent(base+"-agent.pprof", p.window); err != nil {
			fmt.Fprintf(os.Stderr, "profile of the agent: %v\n", err)
		}
	}()
	fmt.Fprintf(os.Stderr, "profiling into %s-{agent,loadgen}.pprof\n", base)
	return []string{"--cpuprofile", base + "-loadgen.pprof"}, func() { <-done }
}

func (p *profiler) agent(path string, window time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), window+30*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.adminAddr, max(int(window.Seconds()), 1))
	resp, err := harness.GetOK(ctx, url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// phaseName names a streamctl bench run by its mode and topic: "produce-tput".
func phaseName(args []string) string {
	name := args[0]
	for i := 1; i+1 < len(args); i++ {
		if args[i] == "--topic" {
			name += "-" + args[i+1]
		}
	}
	return name
}
