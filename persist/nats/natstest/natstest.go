// Package natstest starts real NATS servers with JetStream inside a
// test, on loopback and random ports, for the NATS outbox's tests and
// the end-to-end tests. Only tests import it.
package natstest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is one running nats-server.
type Server struct {
	*server.Server
	Opts *server.Options
	port int
}

// Restart starts a server again with the options (port, store
// directory) s had, after s.Shutdown; it shuts down when the test ends.
func (s *Server) Restart(t testing.TB) *Server {
	t.Helper()
	opts := s.Opts.Clone()
	opts.Port = s.port
	return start(t, opts)
}

// URL is the client URL of s.
func (s *Server) URL() string { return s.ClientURL() }

// Run starts a single JetStream server with its store in a temporary
// directory; it shuts down when the test ends.
func Run(t testing.TB) *Server {
	t.Helper()
	return RunWith(t, nil)
}

// RunWith is Run with tune changing the server's options first.
func RunWith(t testing.TB, tune func(*server.Options)) *Server {
	t.Helper()
	opts := &server.Options{
		ServerName: "n0",
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
	}
	if tune != nil {
		tune(opts)
	}
	return start(t, opts)
}

func start(t testing.TB, opts *server.Options) *Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats-server not ready within 10s")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return &Server{Server: s, Opts: opts, port: s.Addr().(*net.TCPAddr).Port}
}

// Cluster is n JetStream servers routed to each other.
type Cluster struct {
	Servers []*Server
	t       testing.TB
}

// RunCluster starts an n-node JetStream cluster on loopback and waits
// until it has a meta leader.
func RunCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	ports := FreePorts(t, 2*n)
	var routes []string
	for i := 0; i < n; i++ {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
	}
	c := &Cluster{t: t}
	for i := 0; i < n; i++ {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       ports[i],
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: "hookgate-test",
				Host: "127.0.0.1",
				Port: ports[n+i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("nats-server: %v", err)
		}
		go s.Start()
		srv := &Server{Server: s, Opts: opts, port: ports[i]}
		c.Servers = append(c.Servers, srv)
		t.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
	}
	for _, s := range c.Servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats-server not ready within 10s")
		}
	}
	c.WaitLeader()
	return c
}

// WaitLeader waits until the cluster has a JetStream meta leader.
func (c *Cluster) WaitLeader() {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range c.Servers {
			if s.Running() && s.JetStreamIsLeader() {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("JetStream cluster has no leader within 20s")
}

// URLs are the client URLs of the cluster's servers.
func (c *Cluster) URLs() []string {
	var out []string
	for _, s := range c.Servers {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", s.Opts.Port))
	}
	return out
}

// FreePorts returns n different TCP ports that were free a moment ago,
// taken below the kernel's ephemeral range (net.ipv4.ip_local_port_range,
// 32768-60999 by default). A port the kernel hands out for ":0" comes
// from that range, where any client connection on the machine may take
// it between this check and the server's listen: a test gateway failed
// to start with "address already in use" that way while other tests ran
// beside it. Below the range, only a listener can hold a port. They are
// checked on all interfaces (as a ":PORT" listener binds) and held until
// all are chosen, so none is returned twice.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	ports := make([]int, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			t.Fatalf("no free port between %d and %d after %d tries", portsFrom, portsTo, tries)
		}
		p := portsFrom + rand.IntN(portsTo-portsFrom)
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, p)
	}
	return ports
}

// The ports FreePorts chooses from: below the ephemeral range, above the
// fixed ports people give local services.
const portsFrom, portsTo = 20000, 32000
