package natstest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ChildEnv makes a test binary act as nats-server: its value is the
// config file to run. A TestMain calls RunChildIfAsked first, so that
// tests can start real server processes (and SIGKILL them) without a
// nats-server binary.
const ChildEnv = "HOOKGATE_TEST_NATS"

// RunChildIfAsked runs nats-server with the config file named by
// ChildEnv, and never returns, if the variable is set.
func RunChildIfAsked() {
	file := os.Getenv(ChildEnv)
	if file == "" {
		return
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s.ConfigureLogger()
	s.Start()
	s.WaitForShutdown()
	os.Exit(0)
}

// Process is one nats-server running as a child process.
type Process struct {
	URL string
	// StoreDir is the server's JetStream store directory.
	StoreDir string
	cmd      *exec.Cmd
	log      string
}

// Pid is the server's process id, for reading its CPU time and memory
// from /proc.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL to the server and reaps it.
func (p *Process) Kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// Log returns the end of the server's log.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// ProcessCluster is n nats-server processes routed to each other.
type ProcessCluster struct {
	Servers []*Process
}

// URLs are the client URLs of the servers.
func (c *ProcessCluster) URLs() []string {
	var out []string
	for _, p := range c.Servers {
		out = append(out, p.URL)
	}
	return out
}

// RunClusterProcesses starts an n-node JetStream cluster of child
// processes (this test binary, run as nats-server through ChildEnv) on
// loopback, and waits until JetStream answers. They are killed when the
// test ends.
func RunClusterProcesses(t testing.TB, n int) *ProcessCluster {
	t.Helper()
	ports := FreePorts(t, 2*n)
	var routes []string
	for i := 0; i < n; i++ {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
	}
	c := &ProcessCluster{}
	for i := 0; i < n; i++ {
		dir := t.TempDir()
		conf := fmt.Sprintf(`server_name: p%d
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster {
  name: hookgate-test
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, i+1, ports[i], filepath.Join(dir, "js"), ports[n+i], strings.Join(routes, ", "))
		file := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		logFile := filepath.Join(dir, "nats.log")
		out, err := os.Create(logFile)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), ChildEnv+"="+file)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		out.Close()
		p := &Process{URL: fmt.Sprintf("nats://127.0.0.1:%d", ports[i]), StoreDir: filepath.Join(dir, "js"), cmd: cmd, log: logFile}
		c.Servers = append(c.Servers, p)
		t.Cleanup(p.Kill)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range c.Servers {
		addr := strings.TrimPrefix(p.URL, "nats://")
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nats-server %s not listening within 30s; log:\n%s", p.URL, p.Log())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	nc, err := nats.Connect(strings.Join(c.URLs(), ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream cluster not ready within 30s: %v; log:\n%s", err, c.Servers[0].Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
