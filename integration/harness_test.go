package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/hookgate/hookgate/persist/nats/natstest"
)

// caddyMu serialises tests that run Caddy: it is a process-wide singleton.
var caddyMu sync.Mutex

// gateway is a real Caddy running in this process with hookgate loaded.
type gateway struct {
	t       testing.TB
	storage string
	admin   string // host:port of the admin endpoint
	ingest  string // base URL of the HTTP server
	port    int
	// lastConfig is the template most recently loaded.
	lastConfig string
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1)[0]
}

// freePorts returns n different free TCP ports (natstest.FreePorts says
// where from, and why).
func freePorts(t testing.TB, n int) []int { return natstest.FreePorts(t, n) }

// startGateway loads a Caddyfile into an in-process Caddy. The Caddyfile
// is a template: {ADMIN}, {PORT} and {STORAGE} are filled in.
func startGateway(t testing.TB, caddyfile string) *gateway {
	t.Helper()
	caddyMu.Lock()
	ports := freePorts(t, 2)
	g := &gateway{t: t, storage: t.TempDir(), port: ports[0]}
	g.admin = fmt.Sprintf("127.0.0.1:%d", ports[1])
	g.ingest = fmt.Sprintf("http://127.0.0.1:%d", g.port)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
		caddyMu.Unlock()
	})
	g.load(caddyfile)
	return g
}

func (g *gateway) expand(caddyfile string) string {
	return strings.NewReplacer(
		"{ADMIN}", g.admin,
		"{PORT}", fmt.Sprint(g.port),
		"{STORAGE}", g.storage,
	).Replace(caddyfile)
}

// adapt turns a Caddyfile template into JSON.
func (g *gateway) adapt(caddyfile string) []byte {
	g.t.Helper()
	cfg, err := g.tryAdapt(caddyfile)
	if err != nil {
		g.t.Fatal(err)
	}
	return cfg
}

func (g *gateway) tryAdapt(caddyfile string) ([]byte, error) {
	g.t.Helper()
	cfg, warn, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(g.expand(caddyfile)),
		map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return nil, fmt.Errorf("adapting Caddyfile: %w", err)
	}
	for _, w := range warn {
		g.t.Logf("adapt warning: %s", w.String())
	}
	return cfg, nil
}

// load (re)loads a config, as `caddy reload` does.
func (g *gateway) load(caddyfile string) {
	g.t.Helper()
	if err := g.tryLoad(caddyfile); err != nil {
		g.t.Fatalf("loading config: %v", err)
	}
	g.lastConfig = caddyfile
}

// tryLoad adapts and loads a config, as `caddy reload` does: an error
// of either step is returned, and the running config stays.
func (g *gateway) tryLoad(caddyfile string) error {
	cfg, err := g.tryAdapt(caddyfile)
	if err != nil {
		return err
	}
	return caddy.Load(cfg, true)
}

// post sends body to path with a JSON content type and returns the
// status and the decoded answer.
func (g *gateway) post(path, body string, headers ...string) (int, map[string]any) {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.ingest+path, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return g.do(req)
}

func (g *gateway) do(req *http.Request) (int, map[string]any) {
	g.t.Helper()
	resp, err := client.Do(req)
	for try := 0; err != nil && isRetryableTransportError(err) && try < 5; try++ {
		// A reload swaps Caddy's listener; a connection that races the
		// swap can be reset before the request is sent, so retrying is safe.
		time.Sleep(100 * time.Millisecond)
		if req.GetBody != nil {
			req.Body, _ = req.GetBody()
		}
		resp, err = client.Do(req)
	}
	if err != nil {
		g.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			g.t.Fatalf("%s %s: answer is not JSON: %q", req.Method, req.URL, raw)
		}
	}
	return resp.StatusCode, out
}

// client posts to the gateway without keep-alive: a reload closes the old
// server's idle connections, and a POST racing that close fails with EOF
// (as it would for any Caddy); tests that reload must not see that.
var client = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   30 * time.Second,
}

// isRetryableTransportError reports whether a request failed in a way a
// test may retry: while connecting, or cut off by a reload.
func isRetryableTransportError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	// A connection the old server accepted while a reload shut it down
	// ends with EOF or a reset before any answer. The request may have been
	// read; tests count deliveries with "at least", so a rare repeat is
	// harmless, and real clients retry the same way (with an id).
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// received is one request a sink got.
type received struct {
	At     time.Time
	Header http.Header
	Body   []byte
	Path   string
	Remote string
}

// sink is a real HTTP endpoint on loopback that records what it receives
// and answers with the status its handler picks.
type sink struct {
	srv    *http.Server
	ln     net.Listener
	URL    string
	mu     sync.Mutex
	got    []received
	notify chan struct{}
	// answer picks the response for the n-th request (0-based).
	answer func(n int, w http.ResponseWriter, r *http.Request)
}

func newSink(t testing.TB, answer func(n int, w http.ResponseWriter, r *http.Request)) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{ln: ln, URL: "http://" + ln.Addr().String(), notify: make(chan struct{}, 1), answer: answer}
	s.srv = &http.Server{Handler: s}
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	n := len(s.got)
	s.got = append(s.got, received{At: time.Now(), Header: r.Header.Clone(), Body: body, Path: r.URL.RequestURI(), Remote: r.RemoteAddr})
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	if s.answer != nil {
		s.answer(n, w, r)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *sink) requests() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

// waitFor waits until the sink has at least n requests or the timeout
// passes, and returns what it has.
func (s *sink) waitFor(t testing.TB, n int, timeout time.Duration) []received {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.requests()
		if len(got) >= n {
			return got
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("sink got %d requests, want %d within %s", len(got), n, timeout)
		}
		select {
		case <-s.notify:
		case <-time.After(min(left, 50*time.Millisecond)):
		}
	}
}

// routesConfig wraps route blocks and extra ingest sites in a gateway
// Caddyfile template.
func routesConfig(routes, sites string) string {
	return `{
	admin {ADMIN}
	persist_config off
	webhooks {
		storage {STORAGE}
		# The sinks run on loopback, which the default policy denies.
		egress default {
			allow 127.0.0.1/32
		}
` + routes + `
	}
}
http://127.0.0.1:{PORT} {
	webhook_ingest /events
` + sites + `
}
`
}

// settledGoroutines lets goroutines of a replaced config wind down for a
// second, then counts them.
func settledGoroutines() int {
	var n int
	for i := 0; i < 20; i++ {
		time.Sleep(50 * time.Millisecond)
		runtime.GC()
		n = runtime.NumGoroutine()
	}
	return n
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMain(m *testing.M) {
	natstest.RunChildIfAsked()
	if os.Getenv(childEnv) != "" {
		runChild()
		return
	}
	// Keep Caddy's own data and config (certificates, autosave) out of the
	// user's home.
	home, err := os.MkdirTemp("", "hookgate-integration-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_DATA_HOME", home+"/data")
	os.Setenv("XDG_CONFIG_HOME", home+"/config")
	code := m.Run()
	os.RemoveAll(home)
	os.Exit(code)
}
