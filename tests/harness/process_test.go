package harness

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStopEndsTheWholeProcessGroup(t *testing.T) {
	dir := t.TempDir()
	// A shell that ignores SIGTERM and has a child: Stop must still end both.
	p, err := StartProcess("stubborn", "/bin/sh", []string{"-c", "trap '' TERM; sleep 300 & echo ready; wait"}, nil, filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	// Signal only once the trap and the child are in place, or the test proves nothing.
	Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(p.LogTail(100), "ready") {
			return errors.New("shell not ready")
		}
		return nil
	})
	pgid := p.Pid()
	if err := p.Stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("Stop returned but the process has not exited")
	}
	// No process of the group is left: signal 0 to the group fails with ESRCH.
	Eventually(t, 5*time.Second, func() error {
		if err := syscall.Kill(-pgid, 0); err != syscall.ESRCH {
			return err
		}
		return nil
	})
}

func TestBinaryNamesTheFix(t *testing.T) {
	t.Setenv(BinDirEnv, t.TempDir())
	if _, err := Binary("minio"); err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("missing binary: %v; the error should say to run make tools", err)
	}
}
