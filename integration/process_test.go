package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// child is Caddy with hookgate running in a separate process: this test
// binary re-executed as the caddy command (see runChild).
type child struct {
	cmd *exec.Cmd
	log string
}

// startChild runs `caddy run --config file --adapter caddyfile` in a new
// process and waits until addr accepts connections.
func startChild(t testing.TB, caddyfile, addr string) *child {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "caddy.log")
	out, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		childEnv+"="+strings.Join([]string{"run", "--config", file, "--adapter", "caddyfile"}, "\x1f"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, log: logFile}
	t.Cleanup(func() { c.kill() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy child did not listen on %s within 60s; log:\n%s", addr, c.tail())
		}
		if cmd.ProcessState != nil {
			t.Fatalf("caddy child exited; log:\n%s", c.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL to the child (by its PID) and reaps it.
func (c *child) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL)
	_ = c.cmd.Wait()
}

// stop asks the child to exit (SIGINT, as Ctrl-C) and waits up to a bound.
func (c *child) stop(t testing.TB) {
	t.Helper()
	if c.cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(c.cmd.Process.Pid, syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		c.kill()
		t.Errorf("caddy child did not exit within 30s of SIGINT")
	}
}

func (c *child) tail() string {
	b, _ := os.ReadFile(c.log)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}
