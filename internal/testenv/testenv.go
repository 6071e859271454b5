// Package testenv starts the real servers that mailcluster's integration
// tests run against: a private PostgreSQL, a private S3 server (Versity S3
// Gateway) and a private OpenLDAP slapd. Each test binary starts at most one
// of each, lazily, on loopback or a private unix socket; each test gets a
// fresh database, bucket or directory tree. Main stops every server it
// started, by PID, when the tests end.
//
// Missing tools are installed by scripts/tools.sh (CI runs it first); a test
// that needs a tool that is not there fails with a message naming the script.
package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	mu      sync.Mutex
	cleanup []func()
)

// Main runs the tests of a package and then stops every server that testenv
// started. Use it from TestMain: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	StopAll()
	os.Exit(code)
}

// StopAll stops every server started so far, newest first.
func StopAll() {
	mu.Lock()
	fns := cleanup
	cleanup = nil
	mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

func atExit(fn func()) {
	mu.Lock()
	cleanup = append(cleanup, fn)
	mu.Unlock()
}

// ToolsDir is where scripts/tools.sh installs the tools built with go
// install: $MAILCLUSTER_TOOLS, or ~/.cache/mailcluster-tools.
func ToolsDir() string {
	if d := os.Getenv("MAILCLUSTER_TOOLS"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "mailcluster-tools")
}

// RepoRoot returns the repository's root directory (where go.mod is).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Process is a server process started by testenv.
type Process struct {
	Cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProcess starts cmd in its own process group, killed when the test
// binary dies (Pdeathsig), and records it so that Main stops it.
func startProcess(cmd *exec.Cmd, stopSig syscall.Signal) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	atExit(func() { p.Stop(stopSig, 10*time.Second) })
	return p, nil
}

// Stop sends sig and waits up to grace for the process to exit, then kills it.
// Stopping a process that already exited does nothing.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitTCP waits until addr accepts connections or the process exits.
func waitTCP(addr string, p *Process, timeout time.Duration, logf func() string) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("exited early: %v\n%s", p.err, logf())
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not listening on %s after %s\n%s", addr, timeout, logf())
}

// errMissingTool explains how to get a missing tool.
func errMissingTool(what string) error {
	return errors.New(what + " is not installed: run scripts/tools.sh")
}

func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
