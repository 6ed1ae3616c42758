package integration

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// connectProxy is a minimal HTTP CONNECT proxy on loopback. It dials
// upstream from src, so a sink can tell its connections from direct
// ones, maps names in resolve to addresses (a proxy that resolves), and
// refuses anything that is not loopback.
type connectProxy struct {
	addr    string
	src     netip.Addr
	resolve map[string]string
	mu      sync.Mutex
	targets []string
	auths   []string
	clients []string
}

func newConnectProxy(t testing.TB, listen, src string, resolve map[string]string) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{addr: ln.Addr().String(), src: netip.MustParseAddr(src), resolve: resolve}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		open = append(open, c)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(c, track)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}

func (p *connectProxy) serve(c net.Conn, track func(net.Conn)) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.targets = append(p.targets, req.Host)
	p.auths = append(p.auths, req.Header.Get("Proxy-Authorization"))
	p.clients = append(p.clients, c.RemoteAddr().String())
	p.mu.Unlock()
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	host, port, err := net.SplitHostPort(req.Host)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if mapped, ok := p.resolve[host]; ok {
		host = mapped
	}
	if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
		io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
		return
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: p.src.AsSlice()}, Timeout: 5 * time.Second}
	up, err := d.Dial("tcp", net.JoinHostPort(host, port))
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	track(up)
	defer up.Close()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{})
	go func() {
		io.Copy(up, br)
		up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, up)
	c.(*net.TCPConn).CloseWrite()
	<-done
}

func (p *connectProxy) seen() (targets, auths, clients []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...), append([]string(nil), p.auths...), append([]string(nil), p.clients...)
}

// TestEgressProxy: deliveries go through a CONNECT proxy, plain HTTP and
// HTTPS alike; the tunnel is opened to the checked IP address (or to the
// name, when the proxy resolves); the sinks only ever see the proxy; the
// policy applies to the destination and to the proxy's own address.
func TestEgressProxy(t *testing.T) {
	s, _ := newConnSink(t, "127.0.0.1:0", nil)
	_, sinkPort, _ := net.SplitHostPort(s.ln.Addr().String())
	denied, deniedConns := newConnSink(t, "127.0.0.3:0", nil)

	var tlsGot atomic.Value
	tlsSink := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tlsGot.Store(r.URL.Path + " from " + r.RemoteAddr + " " + r.Proto)
		w.WriteHeader(http.StatusOK)
	}))
	tlsSink.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSink.EnableHTTP2 = true
	tlsSink.StartTLS()
	t.Cleanup(tlsSink.Close)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "sink-ca.pem")
	writePEM(t, caFile, "CERTIFICATE", tlsSink.Certificate().Raw)

	// The proxy listens on 127.0.0.4 and connects from 127.0.0.9.
	proxy := newConnectProxy(t, "127.0.0.4:0", "127.0.0.9", map[string]string{"partner.test": "127.0.0.1"})
	t.Setenv("HOOKGATE_TEST_PROXY_PASS", "pr0xy-pass")
	proxyURL := "http://hookgate:{env.HOOKGATE_TEST_PROXY_PASS}@" + proxy.addr
	logFile := filepath.Join(dir, "log.json")
	g := startGateway(t, egressConfig(logFile, `
		egress viaproxy {
			bind 127.0.0.2
			allow 127.0.0.1/32 127.0.0.4/32
			proxy `+proxyURL+`
			tls {
				ca `+caFile+`
			}
		}
		# A name: resolved and checked here, the tunnel opened to the address.
		route plain {
			topics p.plain
			url http://localhost:`+sinkPort+`/plain
			egress viaproxy
		}
		route secure {
			topics p.secure
			url `+tlsSink.URL+`/secure
			egress viaproxy
		}
		route resolved {
			topics p.resolved
			url http://partner.test:`+sinkPort+`/resolved
			egress {
				# Only the proxy: the proxy resolves partner.test.
				allow 127.0.0.4/32
				proxy `+proxyURL+`
				proxy_resolves
			}
		}
		route denied {
			topics p.denied
			url `+denied.URL+`/denied
			egress viaproxy
		}
		route proxydenied {
			topics p.proxydenied
			url `+s.URL+`/proxydenied
			egress {
				# The destination but not the proxy.
				allow 127.0.0.1/32
				proxy `+proxyURL+`
			}
		}`))
	ids := map[string]string{}
	for _, name := range []string{"plain", "secure", "resolved", "denied", "proxydenied"} {
		ids[name] = postEvent(t, g, "p."+name)
	}
	got := s.waitFor(t, 2, 10*time.Second)
	eventually(t, 10*time.Second, "the TLS sink's delivery", func() bool { return tlsGot.Load() != nil })
	waitLogged(t, logFile, "delivery dead", "denied")
	waitLogged(t, logFile, "delivery dead", "proxydenied")

	paths := map[string]bool{}
	for _, r := range got {
		paths[r.Path] = true
		if h := hostOf(t, r.Remote); h != "127.0.0.9" {
			t.Errorf("sink saw %s from %s: a direct connection, not the proxy (127.0.0.9)", r.Path, h)
		}
	}
	if !paths["/plain"] || !paths["/resolved"] || len(s.requests()) != 2 {
		t.Errorf("sink got %v, want /plain and /resolved", paths)
	}
	if v := tlsGot.Load().(string); !strings.HasPrefix(v, "/secure from 127.0.0.9:") || !strings.HasSuffix(v, "HTTP/2.0") {
		t.Errorf("TLS sink got %q, want /secure from the proxy over HTTP/2", v)
	}
	targets, auths, clients := proxy.seen()
	wantTargets := map[string]bool{s.ln.Addr().String(): true, tlsSink.Listener.Addr().String(): true, "partner.test:" + sinkPort: true}
	for i, tg := range targets {
		if !wantTargets[tg] {
			t.Errorf("proxy got CONNECT %s; want only checked addresses and the name of the proxy_resolves route", tg)
		}
		if auths[i] != "Basic "+base64.StdEncoding.EncodeToString([]byte("hookgate:pr0xy-pass")) {
			t.Errorf("CONNECT %s came with Proxy-Authorization %q", tg, auths[i])
		}
		if tg != "partner.test:"+sinkPort && hostOf(t, clients[i]) != "127.0.0.2" {
			t.Errorf("CONNECT %s came from %s, want the bind address 127.0.0.2", tg, clients[i])
		}
	}
	if len(targets) != 3 {
		t.Errorf("proxy got %d CONNECTs (%v), want 3", len(targets), targets)
	}
	if n := deniedConns.Load(); n != 0 {
		t.Errorf("the denied destination got %d connections", n)
	}

	g.stop()
	d := onlyDelivery(t, g.storage, ids["denied"])
	if d.LastClass != "egress_denied" || !strings.Contains(d.LastError, "127.0.0.3: loopback 127.0.0.0/8, not in allow") {
		t.Errorf("destination denied through the proxy: %+v", d)
	}
	t.Logf("denied: %s", d.LastError)
	d = onlyDelivery(t, g.storage, ids["proxydenied"])
	t.Logf("proxydenied: %s", d.LastError)
	if d.LastClass != "egress_denied" || !strings.Contains(d.LastError, "proxy http://"+proxy.addr+": egress denied: 127.0.0.4: loopback 127.0.0.0/8, not in allow") {
		t.Errorf("proxy address denied: %+v", d)
	}
	for _, d := range []*persist.Delivery{d, onlyDelivery(t, g.storage, ids["denied"])} {
		if strings.Contains(d.LastError, "pr0xy-pass") {
			t.Errorf("the proxy password is in the attempt record: %s", d.LastError)
		}
	}
	for _, e := range logEntries(t, logFile) {
		if strings.Contains(fmt.Sprint(e), "pr0xy-pass") {
			t.Errorf("the proxy password is in the log: %v", e)
		}
	}
}
