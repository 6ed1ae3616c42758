package console_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard" // basic_auth, log files, respond
	"golang.org/x/crypto/bcrypt"

	_ "github.com/hookgate/hookgate/caddyfile" // the webhook_console directive
	"github.com/hookgate/hookgate/module"
	"github.com/hookgate/hookgate/persist"
)

// The tests run a real Caddy in this process, configured from a
// Caddyfile: the webhooks app with routes to sinks on loopback, the
// console at /console behind basic_auth (user alice) and at /open
// without any auth.

const (
	testUser     = "alice"
	testPassword = "wonderland"
	// secretHeader and urlToken must never show on a console page.
	secretHeader = "Bearer s3cret-header-value"
	urlToken     = "T0KEN-in-the-url"
)

// gateway is a running Caddy with the console.
type gateway struct {
	t       *testing.T
	origin  string // http://127.0.0.1:port
	eng     *module.Engine
	logPath string
	// okHits counts requests to the sink that answers 200.
	okHits atomic.Int64
	// config is the adapted JSON, for reloads.
	config []byte
	// While hold is set, the failing sink answers only once release is
	// closed (or after 20 s), so a test can see an attempt finish.
	hold    atomic.Bool
	release chan struct{}
	client  *http.Client
}

type gatewayOptions struct {
	// extraRoutes are more route blocks for the webhooks app.
	extraRoutes string
	// noRoutes leaves out the routes erp and crm.
	noRoutes bool
}

var hashOnce = func() func() string {
	var h string
	return func() string {
		if h == "" {
			b, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
			if err != nil {
				panic(err)
			}
			h = string(b)
		}
		return h
	}
}()

func startGateway(t *testing.T, o gatewayOptions) *gateway {
	t.Helper()
	g := &gateway{t: t, release: make(chan struct{})}
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.okHits.Add(1)
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(ok.Close)
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.hold.Load() {
			select {
			case <-g.release:
			case <-time.After(20 * time.Second):
			}
		}
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"error":"database is down"}`)
	}))
	t.Cleanup(bad.Close)

	port := freePort(t)
	g.origin = fmt.Sprintf("http://127.0.0.1:%d", port)
	dir := t.TempDir()
	g.logPath = filepath.Join(dir, "caddy.log")
	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
	log {
		output file %s
		format json
		level INFO
	}
	webhooks {
		storage %s
		egress default {
			allow 127.0.0.1/32
		}
		route erp {
			topics task.*
			url %s/hooks
		}
		route crm {
			topics task.*
			url %s/hooks/%s?key=%s
			header Authorization "%s"
			retry {
				attempts 1
			}
		}
%s	}
}
http://127.0.0.1:%d {
	basic_auth /console* {
		%s %s
	}
	webhook_console /console {
		trace_url https://jaeger.example/trace/{trace_id}
	}
	webhook_console /open
	respond / "site root" 200
}
`, g.logPath, filepath.Join(dir, "outbox"), ok.URL, bad.URL, urlToken, urlToken, secretHeader, o.extraRoutes, port, testUser, hashOnce())
	js, warn, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting: %v\n%s", err, cfg)
	}
	if len(warn) > 0 {
		t.Logf("adapt warnings: %v", warn)
	}
	g.config = js
	if o.noRoutes {
		// The routes' lines go; the sinks stay unused.
		start, end := strings.Index(cfg, "\t\troute erp {"), strings.Index(cfg, "\t}\n}\nhttp://")
		cfg = cfg[:start] + cfg[end:]
		if js, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), map[string]any{"filename": "Caddyfile"}); err != nil {
			t.Fatalf("adapting: %v\n%s", err, cfg)
		}
	}
	if err := caddy.Load(js, true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
	app, err := caddy.ActiveContext().App("webhooks")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if g.eng = app.(*module.App).Engine(ctx); g.eng == nil {
		t.Fatal("the webhooks engine did not start")
	}
	g.client = &http.Client{
		Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	waitListening(t, g.origin)
	return g
}

// reload loads the same config again (a real reload: Caddy stops the
// old servers and starts new ones).
func (g *gateway) reload() error {
	return caddy.Load(g.config, true)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(t *testing.T, origin string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(origin + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy does not answer at %s: %v", origin, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answer is a response with its body read.
type answer struct {
	status int
	header http.Header
	body   string
}

// get requests path as alice (auth true) or as nobody.
func (g *gateway) get(path string, auth bool) answer {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.origin+path, nil)
	if err != nil {
		g.t.Fatal(err)
	}
	return g.do(req, auth)
}

func (g *gateway) do(req *http.Request, auth bool) answer {
	g.t.Helper()
	if auth {
		req.SetBasicAuth(testUser, testPassword)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// post sends a form to path as alice from the console's own origin,
// unless the headers say otherwise.
func (g *gateway) post(path string, form url.Values, hdr map[string]string) answer {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.origin+path, strings.NewReader(form.Encode()))
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", g.origin)
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	return g.do(req, true)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the token of the forms on a page of path (as alice).
func (g *gateway) csrf(path string) string {
	g.t.Helper()
	a := g.get(path, true)
	m := csrfField.FindStringSubmatch(a.body)
	if m == nil {
		g.t.Fatalf("no CSRF token on %s (HTTP %d)", path, a.status)
	}
	return m[1]
}

// accept stores n events of type task.created (matched by erp and crm)
// and returns their ids.
func (g *gateway) accept(n int, ctx context.Context) []string {
	g.t.Helper()
	if ctx == nil {
		ctx = context.Background()
	}
	evs := make([]*persist.Event, n)
	for i := range evs {
		evs[i] = &persist.Event{Type: "task.created", Data: []byte(fmt.Sprintf(`{"task":%d,"title":"<b>bold</b>"}`, i)),
			Headers: map[string]string{"Authorization": secretHeader, "X-Request-Source": "tests"}}
	}
	res, err := g.eng.Accept(ctx, evs)
	if err != nil {
		g.t.Fatalf("accepting events: %v", err)
	}
	ids := make([]string, len(res))
	for i, r := range res {
		ids[i] = r.ID
	}
	return ids
}

// deliveryOf returns the id of the event's delivery to route.
func (g *gateway) deliveryOf(eventID, route string) string {
	g.t.Helper()
	rec, err := g.eng.Event(eventID)
	if err != nil {
		g.t.Fatal(err)
	}
	for _, d := range rec.Deliveries {
		if d.Route == route {
			return d.ID
		}
	}
	g.t.Fatalf("event %s has no delivery to %s", eventID, route)
	return ""
}

// waitStatus waits until a delivery has status st.
func (g *gateway) waitStatus(id string, st persist.Status) *module.DeliveryRecord {
	g.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		d, err := g.eng.Delivery(id)
		if err == nil && d.Status == st {
			return d
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("delivery %s: %v %v, want %v", id, d, err, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logLines returns the log lines whose message contains msg.
func (g *gateway) logLines(msg string) []map[string]any {
	g.t.Helper()
	f, err := os.Open(g.logPath)
	if err != nil {
		g.t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && strings.Contains(fmt.Sprint(m["msg"]), msg) {
			out = append(out, m)
		}
	}
	return out
}

func basicAuth() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPassword))
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s: no %q in\n%s", what, w, clip(body))
		}
	}
}

func mustNotContain(t *testing.T, what, body string, bads ...string) {
	t.Helper()
	for _, b := range bads {
		if strings.Contains(body, b) {
			t.Errorf("%s: %q must not appear", what, b)
		}
	}
}

func clip(s string) string {
	if len(s) > 3000 {
		return s[:3000] + "…"
	}
	return s
}
