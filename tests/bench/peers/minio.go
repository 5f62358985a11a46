package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

// minioCost is what MinIO's own process spends on the requests the agent makes most: a
// small PUT (the 1000 records/s phase's objects), and reads of the max-rate phase's
// objects whole and a third at a time (a ranged GET of a segment inside a flush object,
// what a catch-up read makes). It is measured on the idle MinIO from /proc: CPU time,
// and bytes it read (rchar) per byte it sent (wchar).
type minioCost struct {
	SmallPutCPUMs       float64 `json:"small_put_cpu_ms"`
	WholeGetCPUMsPerMiB float64 `json:"whole_get_cpu_ms_per_mib"`
	WholeGetReadPerSent float64 `json:"whole_get_read_per_sent"`
	RangeGetCPUMsPerMiB float64 `json:"range_get_cpu_ms_per_mib"`
	RangeGetReadPerSent float64 `json:"range_get_read_per_sent"`
}

// minioCostPuts is how many small PUTs the CPU per PUT is measured over: the clock ticks of
// /proc are 10 ms, so enough for a few hundred of them.
const minioCostPuts = 500

// minioCostReadBytes: the reads are measured on objects at least this large, such as the
// max-rate phase's flush objects (in -only latency runs the objects are the small ones of
// that phase, and read whole by the agent anyway).
const minioCostReadBytes = 1 << 20

// procIO is a process's CPU time and its read and written bytes (/proc/<pid>/io rchar,
// wchar: through read and write calls, sockets included).
type procIO struct {
	cpu          time.Duration
	rchar, wchar int64
}

func readProcIO(pid int) (procIO, error) {
	cpu, err := cpuTimes(map[string]int{"p": pid})
	if err != nil {
		return procIO{}, err
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "io"))
	if err != nil {
		return procIO{}, err
	}
	p := procIO{cpu: cpu["p"]}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ": ")
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch {
		case !ok:
		case name == "rchar":
			p.rchar = n
		case name == "wchar":
			p.wchar = n
		}
	}
	return p, nil
}

// measureMinIOCost measures minioCost with small PUTs of small bytes and reads of the
// objects keys (written before, objectBytes each).
func measureMinIOCost(ctx context.Context, pid int, store objstore.Store, small []byte, keys []string, objectBytes int) (minioCost, error) {
	var c minioCost
	before, err := readProcIO(pid)
	if err != nil {
		return c, err
	}
	for i := range minioCostPuts {
		if err := store.Put(ctx, fmt.Sprintf("cost-small/%d", i), small); err != nil {
			return c, err
		}
	}
	after, err := readProcIO(pid)
	if err != nil {
		return c, err
	}
	c.SmallPutCPUMs = float64(after.cpu-before.cpu) / float64(time.Millisecond) / minioCostPuts
	if objectBytes < minioCostReadBytes {
		return c, nil
	}

	// Each object read three times over, so that both kinds move the same bytes.
	read := func(get func(key string, third int) ([]byte, error)) (cpuMsPerMiB, readPerSent float64, err error) {
		before, err := readProcIO(pid)
		if err != nil {
			return 0, 0, err
		}
		sent := 0
		for range 3 {
			for _, k := range keys {
				for third := range 3 {
					b, err := get(k, third)
					if err != nil {
						return 0, 0, err
					}
					sent += len(b)
				}
			}
		}
		after, err := readProcIO(pid)
		if err != nil {
			return 0, 0, err
		}
		mib := float64(sent) / (1 << 20)
		return float64(after.cpu-before.cpu) / float64(time.Millisecond) / mib,
			float64(after.rchar-before.rchar) / float64(max(after.wchar-before.wchar, 1)), nil
	}
	third := int64(objectBytes / 3)
	if c.RangeGetCPUMsPerMiB, c.RangeGetReadPerSent, err = read(func(key string, i int) ([]byte, error) {
		return store.GetRange(ctx, key, int64(i)*third, third)
	}); err != nil {
		return c, err
	}
	if c.WholeGetCPUMsPerMiB, c.WholeGetReadPerSent, err = read(func(key string, i int) ([]byte, error) {
		if i > 0 {
			return nil, nil // one whole GET moves the bytes of three thirds
		}
		return store.Get(ctx, key)
	}); err != nil {
		return c, err
	}
	return c, nil
}
