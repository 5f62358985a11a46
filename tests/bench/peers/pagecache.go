package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/streamhouse/streamhouse/tests/harness"
)

// pageCacheCost is what this machine charges for writing into the page cache, where
// MinIO with one drive writes every byte it stores (it opens no file with O_DIRECT then):
// into pages the kernel takes from its free lists, against into pages already cached. On
// a VM that hands freed memory back to its host (free page reporting), the host faults
// each fresh page in again, and that is most of the difference: a cost every process that
// writes new files pays (JetStream's file store too), and that moves with how much memory
// was freed in the minutes before.
type pageCacheCost struct {
	FreshMsPerMiB  float64 `json:"fresh_ms_per_mib"`
	CachedMsPerMiB float64 `json:"cached_ms_per_mib"`
	// Reporting is the kernel's free page reporting settings, "" without it.
	Reporting string `json:"free_page_reporting,omitempty"`
}

// pageCacheMiB is how much measurePageCache writes, twice.
const pageCacheMiB = 256

// measurePageCache writes pageCacheMiB into a new file in dir, then over the same bytes
// again, and times each.
func measurePageCache(dir string) (pageCacheCost, error) {
	var c pageCacheCost
	block := harness.RandomText(1<<20, 4)
	path := filepath.Join(dir, "page-cache-floor")
	defer os.Remove(path)
	write := func(flags int) (float64, error) {
		f, err := os.OpenFile(path, flags, 0o644)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		start := time.Now()
		for range pageCacheMiB {
			if _, err := f.Write(block); err != nil {
				return 0, err
			}
		}
		return float64(time.Since(start).Microseconds()) / 1000 / pageCacheMiB, nil
	}
	var err error
	if c.FreshMsPerMiB, err = write(os.O_CREATE | os.O_WRONLY | os.O_TRUNC); err != nil {
		return c, err
	}
	if c.CachedMsPerMiB, err = write(os.O_WRONLY); err != nil {
		return c, err
	}
	c.Reporting = freePageReporting()
	return c, nil
}

// freePageReporting describes the kernel's free page reporting (virtio-balloon), "" if
// it has none.
func freePageReporting() string {
	const dir = "/sys/module/page_reporting/parameters"
	var parts []string
	for _, p := range []string{"page_reporting_order", "min_free_ms"} {
		if b, err := os.ReadFile(filepath.Join(dir, p)); err == nil {
			parts = append(parts, fmt.Sprintf("%s %s", p, strings.TrimSpace(string(b))))
		}
	}
	return strings.Join(parts, ", ")
}
