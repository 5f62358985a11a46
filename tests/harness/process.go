package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BinDirEnv names the environment variable that overrides where binaries are found.
const BinDirEnv = "STREAMHOUSE_BIN"

// RepoRoot returns the directory holding the module's go.mod, searched upwards from the
// working directory (go test runs each package in its own directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Binary returns the path of a tool built by `make tools`.
func Binary(name string) (string, error) {
	dir := os.Getenv(BinDirEnv)
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("harness: %s not found in %s: run `make tools` first (%w)", name, dir, err)
	}
	return p, nil
}

// FreePort returns a loopback TCP port that was free a moment ago and that it has not
// returned before in this process: the kernel may hand a just-closed port out again,
// and servers started together (the members of an etcd cluster) must not share one. The
// port is below the kernel's range of ephemeral ports where it can be: a port from that
// range, free when chosen, may become the local end of some client's connection (of this
// or another test package running alongside) before the server binds it.
func FreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	span := ephemeralLow() - minPort
	for i := 0; ; i++ {
		// Below the range while there is room there and a free port may still be found;
		// then any port the kernel picks.
		below := span >= 1000 && i < 1000
		addr := "127.0.0.1:0"
		if below {
			addr = "127.0.0.1:" + strconv.Itoa(minPort+rand.IntN(span))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if !below {
				return 0, err
			}
			continue
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !portsGiven[port] {
			portsGiven[port] = true
			return port, nil
		}
	}
}

// minPort is the lowest port FreePort chooses: above the well-known and most registered
// services' ports.
const minPort = 10000

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's default 32768).
func ephemeralLow() int {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
	}
	return 32768
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// Process is a child process whose output goes to a log file.
type Process struct {
	Name    string
	LogPath string

	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
	stopErr  error
}

// StartProcess starts bin with args and env (added to the current environment), logging
// stdout and stderr to logPath.
func StartProcess(name, bin string, args, env []string, logPath string) (*Process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("harness: %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, and SIGKILL when the test binary dies: a crashed or killed test
	// run never leaves servers behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("harness: start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Stop sends SIGTERM to the process group, then SIGKILL after grace, and waits for the
// exit. It returns an error if the process is still there after both.
func (p *Process) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = syscall.Kill(-p.Pid(), syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(grace):
		}
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.stopErr = fmt.Errorf("harness: %s (pid %d) still running after SIGKILL", p.Name, p.Pid())
		}
	})
	return p.stopErr
}

// Signal sends sig to the process group (SIGSTOP and SIGCONT pause and resume it).
func (p *Process) Signal(sig syscall.Signal) error { return syscall.Kill(-p.Pid(), sig) }

// Kill sends SIGKILL to the process group at once and waits for the exit, as a crash would.
func (p *Process) Kill() error {
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	return p.Stop(0)
}

// LogTail returns the last n bytes of the process log, for failure messages.
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// waitReady polls ready until it succeeds, the process exits or the deadline passes.
func waitReady(ctx context.Context, p *Process, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = ready(ctx); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("harness: %s exited before it was ready (%v); log:\n%s", p.Name, p.waitErr, p.LogTail(4096))
		case <-ctx.Done():
			return fmt.Errorf("harness: %s not ready after %s: %v; log:\n%s", p.Name, timeout, last, p.LogTail(4096))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// httpOK returns a readiness check that GETs url and wants 200.
func httpOK(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		resp, err := GetOK(ctx, url)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
}

// GetOK GETs url and returns the response if its status is 200, else an error; the
// caller closes the body.
func GetOK(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return resp, nil
}

func itoa(n int) string { return strconv.Itoa(n) }
