package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// Egress tests. Every address here is a loopback address (127.0.0.0/8
// or ::1): Linux routes all of 127/8 to lo, so 127.0.0.2 and 127.0.0.3
// can be bound without setup and serve as distinct "hosts".

// egressConfig is a gateway template whose log goes, as JSON, to
// logFile, so that tests can wait for outcomes and check what an
// auditor would read.
func egressConfig(logFile, webhooks string) string {
	return `{
	admin {ADMIN}
	persist_config off
	log {
		output file ` + logFile + `
		format json
	}
	webhooks {
		storage {STORAGE}
` + webhooks + `
	}
}
http://127.0.0.1:{PORT} {
	webhook_ingest /events
}
`
}

// connSink is a sink on a chosen address that also counts the
// connections it accepts.
func newConnSink(t testing.TB, addr string, answer func(n int, w http.ResponseWriter, r *http.Request)) (*sink, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{ln: ln, URL: "http://" + ln.Addr().String(), notify: make(chan struct{}, 1), answer: answer}
	var conns atomic.Int64
	s.srv = &http.Server{Handler: s, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}}
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s, &conns
}

// logEntries reads the JSON log lines written so far.
func logEntries(t testing.TB, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(string(data), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// waitLogged waits for a log entry with the given message for route and
// returns it.
func waitLogged(t testing.TB, path, msg, route string) map[string]any {
	t.Helper()
	var found map[string]any
	eventually(t, 15*time.Second, fmt.Sprintf("log entry %q for route %s", msg, route), func() bool {
		for _, e := range logEntries(t, path) {
			if e["msg"] == msg && e["route"] == route {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

func postEvent(t testing.TB, g *gateway, typ string) string {
	t.Helper()
	code, ans := g.post("/events", `{"type":"`+typ+`","data":{"n":1}}`)
	if code != http.StatusAccepted {
		t.Fatalf("post %s: %d %v", typ, code, ans)
	}
	routes, _ := ans["routes"].([]any)
	if len(routes) != 1 {
		t.Fatalf("post %s: routes %v, want one", typ, ans["routes"])
	}
	return ans["id"].(string)
}

func hostOf(t testing.TB, remote string) string {
	t.Helper()
	h, _, err := net.SplitHostPort(remote)
	if err != nil {
		t.Fatalf("remote address %q: %v", remote, err)
	}
	return h
}

func hasIPv6Loopback() bool {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// TestEgressBindPerRoute: two routes deliver the same event at the same
// time, one pinned to 127.0.0.2 by a named policy and one to 127.0.0.3 by
// an inline policy; the sink sees each from its own address.
func TestEgressBindPerRoute(t *testing.T) {
	s, _ := newConnSink(t, "127.0.0.1:0", nil)
	logFile := filepath.Join(t.TempDir(), "log.json")
	v6 := hasIPv6Loopback()
	bind := "127.0.0.2"
	if v6 {
		bind += " ::1"
	}
	routes := `
		egress pinned {
			bind ` + bind + `
			allow 127.0.0.1/32 ::1/128
		}
		route two {
			topics bind.test
			url ` + s.URL + `/two
			egress pinned
		}
		route three {
			topics bind.test
			url ` + s.URL + `/three
			egress {
				bind 127.0.0.3
				allow 127.0.0.1/32
			}
		}`
	var s6 *sink
	if v6 {
		s6, _ = newConnSink(t, "[::1]:0", nil)
		routes += `
		route six {
			topics bind.test
			url ` + s6.URL + `/six
			egress pinned
		}`
	} else {
		t.Log("no IPv6 loopback: the ::1 part is skipped")
	}
	g := startGateway(t, egressConfig(logFile, routes))
	if code, ans := g.post("/events", `{"type":"bind.test","data":{}}`); code != http.StatusAccepted {
		t.Fatalf("%d %v", code, ans)
	}
	from := map[string]string{}
	for _, r := range s.waitFor(t, 2, 10*time.Second) {
		from[r.Path] = hostOf(t, r.Remote)
	}
	if from["/two"] != "127.0.0.2" || from["/three"] != "127.0.0.3" {
		t.Errorf("source addresses seen by the sink: %v, want /two from 127.0.0.2 and /three from 127.0.0.3", from)
	}
	if v6 {
		got := s6.waitFor(t, 1, 10*time.Second)[0]
		if h := hostOf(t, got.Remote); h != "::1" {
			t.Errorf("IPv6 sink saw %s, want ::1", h)
		}
	}
}

// TestEgressDefaultPolicy: with no policy, a route to loopback fails
// egress_denied and no connection reaches the sink; `allow 127.0.0.1/32`
// lets it through; a deny inside an allowed range wins. The refusal is in
// the attempt record and the log, with the address and the rule.
func TestEgressDefaultPolicy(t *testing.T) {
	s, conns := newConnSink(t, "127.0.0.1:0", nil)
	logFile := filepath.Join(t.TempDir(), "log.json")
	g := startGateway(t, egressConfig(logFile, `
		route builtin {
			topics t.builtin
			url `+s.URL+`/builtin
			retry {
				schedule 100ms
			}
		}
		route allowed {
			topics t.allowed
			url `+s.URL+`/allowed
			egress {
				allow 127.0.0.1/32
			}
		}
		route carved {
			topics t.carved
			url `+s.URL+`/carved
			egress {
				allow 127.0.0.0/8
				deny 127.0.0.1/32
			}
		}`))
	builtin := postEvent(t, g, "t.builtin")
	carved := postEvent(t, g, "t.carved")
	allowed := postEvent(t, g, "t.allowed")

	dead := waitLogged(t, logFile, "delivery dead", "builtin")
	waitLogged(t, logFile, "delivery dead", "carved")
	got := s.waitFor(t, 1, 10*time.Second)
	time.Sleep(200 * time.Millisecond) // a retry of the refused ones would come within 100ms
	if len(s.requests()) != 1 || got[0].Path != "/allowed" {
		t.Fatalf("sink got %+v, want only /allowed", s.requests())
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("sink accepted %d connections; the refused routes must not connect at all", n)
	}
	const rule = "127.0.0.1: loopback 127.0.0.0/8, not in allow (built-in default egress policy)"
	if dead["class"] != "egress_denied" || !strings.Contains(fmt.Sprint(dead["error"]), rule) {
		t.Errorf("log entry %v, want class egress_denied and an error with %q", dead, rule)
	}

	g.stop()
	d := onlyDelivery(t, g.storage, builtin)
	if d.Status != persist.StatusDead || d.Attempts != 1 || d.LastClass != "egress_denied" || !strings.Contains(d.LastError, rule) {
		t.Errorf("built-in policy delivery %+v", d)
	}
	t.Logf("attempt record: class %s, error %s", d.LastClass, d.LastError)
	atts := attempts(t, g.storage, d.ID)
	if len(atts) != 1 || atts[0].Class != "egress_denied" || !strings.Contains(atts[0].Error, rule) {
		t.Errorf("attempts %+v", atts)
	}
	d = onlyDelivery(t, g.storage, carved)
	if d.Status != persist.StatusDead || d.LastClass != "egress_denied" || !strings.Contains(d.LastError, "127.0.0.1: in deny 127.0.0.1/32") {
		t.Errorf("deny inside allow: %+v", d)
	}
	if d := onlyDelivery(t, g.storage, allowed); d.Status != persist.StatusDelivered {
		t.Errorf("allowed: %+v", d)
	}
}

// TestEgressLoadErrors: a bind address the host does not have, or a
// route naming an undefined policy, fails the load with a clear message,
// and the running config stays.
func TestEgressLoadErrors(t *testing.T) {
	s := newSink(t, nil)
	logFile := filepath.Join(t.TempDir(), "log.json")
	good := `
		route erp {
			topics t.x
			url ` + s.URL + `/erp
			egress {
				allow 127.0.0.1/32
			}
		}`
	g := startGateway(t, egressConfig(logFile, good))
	for _, tc := range []struct{ body, want string }{
		// 203.0.113.7 is a documentation address: no host has it.
		{`
		egress pinned {
			bind 203.0.113.7
		}` + good, `egress policy "pinned": bind 203.0.113.7: this host has no such address`},
		{`
		route erp {
			topics t.x
			url ` + s.URL + `/erp
			egress parnter
		}`, `route erp: egress policy "parnter" is not defined (defined: none)`},
	} {
		err := g.tryLoad(egressConfig(logFile, tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("load error %v, want %q", err, tc.want)
		}
	}
	postEvent(t, g, "t.x")
	s.waitFor(t, 1, 10*time.Second)
}

// TestEgressRedirects: redirects are followed only when the policy says
// so, each hop is checked, and the hop past the limit is refused.
func TestEgressRedirects(t *testing.T) {
	final, _ := newConnSink(t, "127.0.0.1:0", nil)
	denied, deniedConns := newConnSink(t, "127.0.0.2:0", nil)
	redirector, _ := newConnSink(t, "127.0.0.1:0", func(n int, w http.ResponseWriter, r *http.Request) {
		to := map[string]string{
			"/to-final":  final.URL + "/ok",
			"/to-denied": denied.URL + "/x",
			"/chain1":    "/chain2",
			"/chain2":    "/chain3",
			"/chain3":    final.URL + "/too-far",
			"/moved":     final.URL + "/moved",
		}[r.URL.Path]
		w.Header().Set("Location", to)
		if r.URL.Path == "/moved" {
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		w.WriteHeader(http.StatusTemporaryRedirect)
	})
	logFile := filepath.Join(t.TempDir(), "log.json")
	route := func(name, path, policy string, more ...string) string {
		return `
		route ` + name + ` {
			topics r.` + name + `
			url ` + redirector.URL + path + `
			egress ` + policy + `
			` + strings.Join(more, "\n\t\t\t") + `
		}`
	}
	g := startGateway(t, egressConfig(logFile, `
		egress follow {
			allow 127.0.0.1/32
			follow_redirects 2
		}
		egress nofollow {
			allow 127.0.0.1/32
		}`+
		// The hop to another host (port) keeps the signature, whatever
		// its header's name, and drops credentials named like one.
		route("follow", "/to-final", "follow",
			`sign hmac-sha256 whsec-test-secret {
				header X-Shopify-Hmac-Sha256
			}`,
			"header X-Signature-Key static-credential", "header X-Api-Key k", "header X-Tenant t")+
		route("denied", "/to-denied", "follow")+
		route("chain", "/chain1", "follow")+
		route("moved", "/moved", "follow")+
		route("off", "/to-final", "nofollow")))
	ids := map[string]string{}
	for _, name := range []string{"follow", "denied", "chain", "moved", "off"} {
		ids[name] = postEvent(t, g, "r."+name)
	}
	waitLogged(t, logFile, "delivered", "follow")
	for _, name := range []string{"denied", "chain", "moved", "off"} {
		waitLogged(t, logFile, "delivery dead", name)
	}
	got := final.requests()
	if len(got) != 1 || got[0].Path != "/ok" || got[0].Header.Get("Webhook-Id") != ids["follow"] || !strings.Contains(string(got[0].Body), ids["follow"]) {
		t.Errorf("final sink got %+v, want one POST to /ok with the event (307 keeps the body)", got)
	} else if h := got[0].Header; h.Get("X-Shopify-Hmac-Sha256") == "" || h.Get("X-Tenant") != "t" || h.Get("X-Signature-Key") != "" || h.Get("X-Api-Key") != "" {
		t.Errorf("final sink's headers %v: want the signature and X-Tenant, not X-Signature-Key or X-Api-Key", h)
	}
	if n := deniedConns.Load(); n != 0 {
		t.Errorf("the denied address got %d connections", n)
	}

	g.stop()
	check := func(name, class string, status int, errPart string) {
		t.Helper()
		d := onlyDelivery(t, g.storage, ids[name])
		t.Logf("%s: class %q, error %q", name, d.LastClass, d.LastError)
		if d.LastClass != class || d.LastStatus != status || !strings.Contains(d.LastError, errPart) {
			t.Errorf("%s: class %q status %d error %q; want %q %d %q", name, d.LastClass, d.LastStatus, d.LastError, class, status, errPart)
		}
	}
	check("follow", "", 200, "")
	check("denied", "egress_denied", 0, "127.0.0.2: loopback 127.0.0.0/8, not in allow")
	check("chain", "egress_denied", 0, "too many redirects")
	check("moved", "http_3xx", 301, "301")
	check("off", "http_3xx", 307, "307")
}

// TestEgressMutualTLS: a sink that requires a client certificate from a
// test CA accepts a route presenting one; a route without it fails with
// class tls (and is retried).
func TestEgressMutualTLS(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)

	var got atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			got.Store(r.URL.Path + " " + r.TLS.PeerCertificates[0].Subject.CommonName)
		}
		w.WriteHeader(http.StatusOK)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{pki.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.pool,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	logFile := filepath.Join(dir, "log.json")
	g := startGateway(t, egressConfig(logFile, `
		route mtls {
			topics m.mtls
			url `+srv.URL+`/mtls
			egress {
				allow 127.0.0.1/32
				tls {
					ca `+pki.caFile+`
					client_cert `+pki.certFile+` `+pki.keyFile+`
					min_version 1.3
				}
			}
		}
		route nocert {
			topics m.nocert
			url `+srv.URL+`/nocert
			retry {
				schedule 1h
			}
			egress {
				allow 127.0.0.1/32
				tls {
					ca `+pki.caFile+`
				}
			}
		}
		route untrusted {
			topics m.untrusted
			url `+srv.URL+`/untrusted
			retry {
				schedule 1h
			}
			egress {
				allow 127.0.0.1/32
			}
		}`))
	ok := postEvent(t, g, "m.mtls")
	nocert := postEvent(t, g, "m.nocert")
	untrusted := postEvent(t, g, "m.untrusted")
	waitLogged(t, logFile, "delivered", "mtls")
	waitLogged(t, logFile, "delivery attempt failed", "nocert")
	waitLogged(t, logFile, "delivery attempt failed", "untrusted")
	if v, _ := got.Load().(string); v != "/mtls hookgate-test-client" {
		t.Errorf("sink got %q, want /mtls from the client certificate", v)
	}
	g.stop()
	if d := onlyDelivery(t, g.storage, ok); d.Status != persist.StatusDelivered {
		t.Errorf("mtls: %+v", d)
	}
	for name, id := range map[string]string{"nocert": nocert, "untrusted": untrusted} {
		d := onlyDelivery(t, g.storage, id)
		t.Logf("%s: class %q, error %q", name, d.LastClass, d.LastError)
		if d.Status != persist.StatusPending || d.Attempts != 1 || d.LastClass != "tls" {
			t.Errorf("%s: %+v, want pending after one attempt of class tls", name, d)
		}
	}
}

// TestEgressReloadKeepsConnections: a reload that leaves the policy as
// it was keeps its transport, so the next delivery reuses the pooled
// connection; a changed policy gets a new transport.
func TestEgressReloadKeepsConnections(t *testing.T) {
	s, conns := newConnSink(t, "127.0.0.1:0", nil)
	logFile := filepath.Join(t.TempDir(), "log.json")
	cfg := func(header, allow string) string {
		return egressConfig(logFile, `
		egress default {
			allow `+allow+`
		}
		route erp {
			topics t.x
			url `+s.URL+`/erp
			header X-Config `+header+`
		}`)
	}
	g := startGateway(t, cfg("one", "127.0.0.1/32"))
	postEvent(t, g, "t.x")
	s.waitFor(t, 1, 10*time.Second)
	g.load(cfg("two", "127.0.0.1/32"))
	postEvent(t, g, "t.x")
	got := s.waitFor(t, 2, 10*time.Second)
	if got[1].Header.Get("X-Config") != "two" {
		t.Fatalf("second delivery not from the reloaded config: %v", got[1].Header)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections after a reload that kept the policy; want the pooled one reused", n)
	}
	g.load(cfg("three", "127.0.0.0/8"))
	postEvent(t, g, "t.x")
	s.waitFor(t, 3, 10*time.Second)
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections after a reload that changed the policy; want a new transport (2)", n)
	}
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, the CA and client files written as PEM.
type testPKI struct {
	pool                      *x509.CertPool
	server                    tls.Certificate
	caFile, certFile, keyFile string
}

func newTestPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hookgate test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
		}, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	srvDER, srvKey := issue(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	cliDER, cliKey := issue(3, "hookgate-test-client", x509.ExtKeyUsageClientAuth, nil)
	p := &testPKI{
		pool:     x509.NewCertPool(),
		server:   tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey},
		caFile:   filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "client.pem"),
		keyFile:  filepath.Join(dir, "client.key"),
	}
	p.pool.AddCert(ca)
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	writePEM(t, p.certFile, "CERTIFICATE", cliDER)
	keyDER, err := x509.MarshalECPrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.keyFile, "EC PRIVATE KEY", keyDER)
	return p
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEgressKeepAliveReuse delivers 1,000 events through a route with an
// egress policy and counts the connections the sink accepts: keep-alive
// reuse must hold, so no more than the route's concurrency.
func TestEgressKeepAliveReuse(t *testing.T) {
	s, conns := newConnSink(t, "127.0.0.1:0", nil)
	logFile := filepath.Join(t.TempDir(), "log.json")
	g := startGateway(t, egressConfig(logFile, `
		route erp {
			topics k.*
			url `+s.URL+`/erp
			concurrency 16
			egress {
				allow 127.0.0.1/32
			}
		}`))
	const n = 1000
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"k.x","data":{"i":%d}}`, i)
	}
	b.WriteByte(']')
	if code, ans := g.post("/events", b.String()); code != http.StatusAccepted {
		t.Fatalf("%d %v", code, ans)
	}
	s.waitFor(t, n, 60*time.Second)
	c := conns.Load()
	t.Logf("new connections per %d deliveries: %d", n, c)
	// 16 attempts in flight need 16 connections. Go's transport puts a
	// connection back in the pool from its read loop, so under load an
	// attempt can start just before that and dial one more; without reuse
	// it would be one per delivery.
	if c > 32 {
		t.Errorf("%d connections for %d deliveries at concurrency 16: keep-alive reuse does not hold", c, n)
	}
}
