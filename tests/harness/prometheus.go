package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Prometheus is a real Prometheus server started from ./bin/prometheus (Debian's build).
type Prometheus struct {
	// URL is the HTTP API base, http://127.0.0.1:<port>.
	URL     string
	Process *Process
}

// StartPrometheus starts Prometheus scraping the given /metrics targets (host:port) as job
// "streamhouse" every interval, with its data in dir, and waits until it is ready.
func StartPrometheus(ctx context.Context, dir string, interval time.Duration, targets []string) (*Prometheus, error) {
	bin, err := Binary("prometheus")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	quoted := make([]string, len(targets))
	for i, t := range targets {
		quoted[i] = strconv.Quote(t)
	}
	cfg := fmt.Sprintf("global:\n  scrape_interval: %s\n  evaluation_interval: %s\nscrape_configs:\n"+
		"  - job_name: streamhouse\n    static_configs:\n      - targets: [%s]\n", interval, interval, strings.Join(quoted, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + itoa(port)
	args := []string{"--config.file=" + cfgPath, "--storage.tsdb.path=" + filepath.Join(dir, "tsdb"),
		"--web.listen-address=" + addr, "--log.level=warn"}
	p, err := StartProcess("prometheus", bin, args, nil, filepath.Join(dir, "prometheus.log"))
	if err != nil {
		return nil, err
	}
	prom := &Prometheus{URL: "http://" + addr, Process: p}
	err = waitReady(ctx, p, 60*time.Second, httpOK(prom.URL+"/-/ready"))
	if err != nil {
		_ = p.Stop(5 * time.Second)
		return nil, err
	}
	return prom, nil
}

// Stop stops the server; the error says if it would not exit.
func (p *Prometheus) Stop() error { return p.Process.Stop(10 * time.Second) }

// Sample is one series of an instant query's result.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query runs an instant PromQL query through the HTTP API at base (http://host:port). An
// invalid query is an error; a query that matches nothing returns no samples.
func Query(ctx context.Context, base, query string) ([]Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("query %q: %s: %w", query, resp.Status, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", query, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: a %s, not an instant vector", query, r.Data.ResultType)
	}
	out := make([]Sample, 0, len(r.Data.Result))
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			v = math.NaN()
		}
		out = append(out, Sample{Labels: s.Metric, Value: v})
	}
	return out, nil
}

// Query runs an instant query against this server.
func (p *Prometheus) Query(ctx context.Context, query string) ([]Sample, error) {
	return Query(ctx, p.URL, query)
}
