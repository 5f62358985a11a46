package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// Command builds ./cmd/<name> once per test process (from the Go build cache, so that
// tests always run the code under test) and returns the binary's path.
func Command(name string) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[name]; ok {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", name+"-bin-")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", p, "./cmd/"+name)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("harness: build %s: %v\n%s", name, err, out)
	}
	built[name] = p
	return p, nil
}

// StreamhouseBinary is Command("streamhouse").
func StreamhouseBinary() (string, error) { return Command("streamhouse") }

// AgentConfig describes one agent process.
type AgentConfig struct {
	Node, Zone string
	Etcd       string // client endpoint
	EtcdRoot   string
	StoreURL   string
	SessionTTL time.Duration // default: the agent's default
	Env        []string      // extra environment, e.g. AWS credentials
	Args       []string      // extra flags
	// ClusterAddr is where the agent-to-agent remote listens (default: a free loopback
	// port): a test that puts a proxy in front of it chooses it, and has the agent
	// advertise the proxy (--cluster-advertise in Args).
	ClusterAddr string
}

// Agent is a `streamhouse agent` process.
type Agent struct {
	Config      AgentConfig
	ClusterAddr string
	GRPCAddr    string // the client API
	AdminAddr   string // /metrics, /healthz, /readyz
	KafkaAddr   string // the Kafka protocol listener
	Process     *Process
	dir         string
}

// StartAgent starts an agent on a free loopback port and waits until it runs.
func StartAgent(ctx context.Context, dir string, cfg AgentConfig) (*Agent, error) {
	bin, err := StreamhouseBinary()
	if err != nil {
		return nil, err
	}
	clusterAddr := cfg.ClusterAddr
	if clusterAddr == "" {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		clusterAddr = "127.0.0.1:" + itoa(port)
	}
	grpcPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	adminPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	kafkaPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	a := &Agent{Config: cfg, ClusterAddr: clusterAddr, GRPCAddr: "127.0.0.1:" + itoa(grpcPort),
		AdminAddr: "127.0.0.1:" + itoa(adminPort), KafkaAddr: "127.0.0.1:" + itoa(kafkaPort), dir: dir}
	return a, a.start(ctx, bin)
}

func (a *Agent) start(ctx context.Context, bin string) error {
	cfg := a.Config
	args := []string{"agent", "--node", cfg.Node, "--zone", cfg.Zone, "--etcd", cfg.Etcd, "--etcd-root", cfg.EtcdRoot,
		"--store", cfg.StoreURL, "--cluster-listen", a.ClusterAddr, "--grpc-listen", a.GRPCAddr, "--admin-listen", a.AdminAddr,
		"--kafka-listen", a.KafkaAddr, "--log-level", "info"}
	if cfg.SessionTTL > 0 {
		args = append(args, "--session-ttl", cfg.SessionTTL.String())
	}
	args = append(args, cfg.Args...)
	logPath := filepath.Join(a.dir, fmt.Sprintf("%s-%d.log", cfg.Node, time.Now().UnixNano()))
	p, err := StartProcess(cfg.Node, bin, args, cfg.Env, logPath)
	if err != nil {
		return err
	}
	a.Process = p
	return waitReady(ctx, p, 60*time.Second, func(context.Context) error {
		if !strings.Contains(p.LogTail(1<<20), `"agent running"`) {
			return fmt.Errorf("%s not running yet", cfg.Node)
		}
		return nil
	})
}

// Restart starts the agent again after it stopped or was killed, on the same port.
func (a *Agent) Restart(ctx context.Context) error {
	bin, err := StreamhouseBinary()
	if err != nil {
		return err
	}
	return a.start(ctx, bin)
}

// Signal sends sig to the agent's process group (SIGSTOP and SIGCONT to pause it).
func (a *Agent) Signal(sig syscall.Signal) error { return a.Process.Signal(sig) }

// Stop stops the agent gracefully (SIGTERM), killing it after 30s.
func (a *Agent) Stop() error { return a.Process.Stop(30 * time.Second) }

// BehindProxy has cfg's agent listen for the other agents on a free loopback port and
// advertise a proxy in front of it instead, which a test cuts to make the agent
// unreachable to the others, its answers to them included. The caller closes the proxy.
func BehindProxy(cfg *AgentConfig) (*Proxy, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:" + itoa(port)
	p, err := StartProxy(listen)
	if err != nil {
		return nil, err
	}
	cfg.ClusterAddr = listen
	cfg.Args = append(cfg.Args, "--cluster-advertise", p.Addr)
	return p, nil
}
