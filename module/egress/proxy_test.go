package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"github.com/hookgate/hookgate/internal/testnet"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestAllowOnlyThroughProxy: host entries are matched against the name
// asked for, whether this side resolves (CONNECT to the checked address)
// or the proxy does (CONNECT to the name); the proxy's own address needs
// no allow_only entry.
func TestAllowOnlyThroughProxy(t *testing.T) {
	var mu sync.Mutex
	var connects []string
	proxy := testnet.RawListener(t, func(c net.Conn) {
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		mu.Lock()
		connects = append(connects, req.Host)
		mu.Unlock()
		io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
	})
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := connects
		connects = nil
		return out
	}
	lookup := func(ctx context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "partner.test", "api.partner.test":
			return []netip.Addr{netip.MustParseAddr("127.0.0.5")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.6")}, nil
	}
	for _, resolves := range []bool{false, true} {
		p := testPolicy(t, Policy{
			Allow:         []string{"127.0.0.0/8"}, // the proxy's and the partner's addresses
			AllowOnly:     []string{"partner.test", "*.partner.test"},
			Proxy:         "http://" + proxy,
			ProxyResolves: resolves,
		})
		p.lookup = lookup
		c := newClient(p)
		for _, tc := range []struct {
			host    string
			connect string // "" refused here, else the CONNECT target
			denied  string
		}{
			{"partner.test", "127.0.0.5:9", ""},
			{"api.partner.test", "127.0.0.5:9", ""},
			{"other.test", "", "not in allow_only"},
			{"127.0.0.5", "", "127.0.0.5: not in allow_only"},
		} {
			want := tc.connect
			if resolves && want != "" {
				want = tc.host + ":9"
			}
			err := post(c, "http://"+tc.host+":9/hook")
			got := seen()
			if want == "" {
				if !isDenied(err) || !strings.Contains(err.Error(), tc.denied) || len(got) != 0 {
					t.Errorf("resolves %v, %s: %v, CONNECT %v; want refused here (%s)", resolves, tc.host, err, got, tc.denied)
				}
				continue
			}
			if !isDenied(err) || !strings.Contains(err.Error(), "refused CONNECT") || len(got) != 1 || got[0] != want {
				t.Errorf("resolves %v, %s: %v, CONNECT %v; want CONNECT %s", resolves, tc.host, err, got, want)
			}
		}
		c.Destruct()
	}
}

// connectProxy is an HTTP CONNECT proxy on TLS (an https:// proxy) that
// wants Basic credentials hookgate:s3cr3t and tunnels to loopback only.
type connectProxy struct {
	srv   *httptest.Server
	mu    sync.Mutex
	auths []string
}

func newTLSConnectProxy(t *testing.T) *connectProxy {
	t.Helper()
	cp := &connectProxy{}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("hookgate:s3cr3t"))
	cp.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cp.mu.Lock()
		cp.auths = append(cp.auths, r.Header.Get("Proxy-Authorization"))
		cp.mu.Unlock()
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		if r.Header.Get("Proxy-Authorization") != want {
			w.WriteHeader(http.StatusProxyAuthRequired)
			return
		}
		if ap, err := netip.ParseAddrPort(r.Host); err != nil || !ap.Addr().IsLoopback() {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			up.Close()
			return
		}
		io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
		done := make(chan struct{})
		go func() {
			io.Copy(up, brw)
			up.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		io.Copy(conn, up)
		conn.Close()
		up.Close()
		<-done
	}))
	cp.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	cp.srv.StartTLS()
	t.Cleanup(cp.srv.Close)
	return cp
}

func (cp *connectProxy) seen() []string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	out := cp.auths
	cp.auths = nil
	return out
}

// TestHTTPSProxy: TLS to the proxy itself, trusted through proxy_ca,
// with credentials the proxy checks; wrong credentials are retried (not
// egress_denied) and never shown; an untrusted proxy certificate fails
// the TLS handshake before any credential is sent.
func TestHTTPSProxy(t *testing.T) {
	cp := newTLSConnectProxy(t)
	dest := newCountingServer(t, "127.0.0.1:0", false)
	dir := t.TempDir()
	ca := filepath.Join(dir, "proxy-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cp.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	proxyAddr := cp.srv.Listener.Addr().String()
	t.Setenv("HOOKGATE_TEST_PROXY_PASS", "s3cr3t")
	policy := func(userinfo string, proxyCA []string) *Client {
		c := newClient(testPolicy(t, Policy{
			Allow:   []string{"127.0.0.1/32"},
			Proxy:   "https://" + userinfo + "@" + proxyAddr,
			ProxyCA: proxyCA,
		}))
		t.Cleanup(func() { c.Destruct() })
		return c
	}

	good := policy("hookgate:{env.HOOKGATE_TEST_PROXY_PASS}", []string{ca})
	if err := post(good, dest.url+"/hook"); err != nil {
		t.Fatalf("through the https proxy: %v", err)
	}
	if dest.reqs.Load() != 1 {
		t.Fatalf("destination got %d requests, want 1", dest.reqs.Load())
	}
	if got := cp.seen(); len(got) != 1 || got[0] != "Basic "+base64.StdEncoding.EncodeToString([]byte("hookgate:s3cr3t")) {
		t.Errorf("proxy saw Proxy-Authorization %q", got)
	}

	bad := policy("hookgate:wr0ng-pass", []string{ca})
	err := post(bad, dest.url+"/hook")
	if err == nil || isDenied(err) || !strings.Contains(err.Error(), "407") {
		t.Errorf("wrong credentials: %v, want a 407 (retried, not egress_denied)", err)
	}
	if err != nil && (strings.Contains(err.Error(), "wr0ng-pass") || strings.Contains(err.Error(), "hookgate:")) {
		t.Errorf("error shows the credentials: %v", err)
	}
	if !strings.Contains(err.Error(), "proxy https://"+proxyAddr) {
		t.Errorf("error %v does not name the proxy", err)
	}
	cp.seen()

	untrusted := policy("hookgate:s3cr3t", nil) // the system CAs do not know the proxy's
	err = post(untrusted, dest.url+"/hook")
	var cv *tls.CertificateVerificationError
	if !errors.As(err, &cv) || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("untrusted proxy certificate: %v, want a certificate verification error", err)
	}
	if got := cp.seen(); len(got) != 0 {
		t.Errorf("credentials went to an untrusted proxy: %d requests", len(got))
	}
	if dest.reqs.Load() != 1 {
		t.Errorf("destination got %d requests, want still 1", dest.reqs.Load())
	}
}
