package integration

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is a real OTLP/HTTP trace endpoint on loopback: it decodes
// the export requests the gateway's exporter sends.
type otlpReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	rc := &otlpReceiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				rc.spans = append(rc.spans, ss.Spans...)
			}
		}
		rc.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Write(out)
	}))
	t.Cleanup(rc.srv.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rc.srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	return rc
}

func (rc *otlpReceiver) named(prefix string) []*tracepb.Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range rc.spans {
		if strings.HasPrefix(s.Name, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func spanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			if sv := kv.Value.GetStringValue(); sv != "" {
				return sv
			}
			return strconv.FormatInt(kv.Value.GetIntValue(), 10)
		}
	}
	return ""
}

func TestTracesFollowAnEventThroughRetriesAndARestart(t *testing.T) {
	rc := newOTLPReceiver(t)
	const appTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	const appSpan = "00f067aa0ba902b7"
	var erpSeen atomic.Int32
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/erp") && erpSeen.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	g := startGateway(t, routesConfig(`
		route erp {
			topics task.*
			url `+s.URL+`/erp
			retry {
				schedule 1s
			}
		}
		route quiet {
			topics task.*
			url `+s.URL+`/quiet
			trace_propagation off
		}`, ""))
	code, ans := g.post("/events", `{"type":"task.created","data":{}}`, "traceparent", "00-"+appTrace+"-"+appSpan+"-01")
	if code != 202 {
		t.Fatalf("%d %v", code, ans)
	}
	s.waitFor(t, 2, 10*time.Second) // erp's 503 and quiet's 200
	// Restart before erp's retry is due: the retry must join the same trace.
	g.stop()
	g.load(g.lastConfig)
	s.waitFor(t, 3, 15*time.Second)
	g.stop() // flushes the exporter

	for _, r := range s.requests() {
		tp := r.Header.Get("Traceparent")
		switch {
		case strings.HasPrefix(r.Path, "/quiet"):
			if tp != "" {
				t.Errorf("trace_propagation off, but the receiver got traceparent %q", tp)
			}
		case !strings.HasPrefix(tp, "00-"+appTrace+"-"):
			t.Errorf("erp request traceparent %q, want trace %s", tp, appTrace)
		}
	}
	eventually(t, 10*time.Second, "spans at the OTLP receiver", func() bool {
		return len(rc.named("webhook ingest")) >= 1 && len(rc.named("webhook delivery erp")) >= 2
	})
	ingest := rc.named("webhook ingest")[0]
	if hex.EncodeToString(ingest.TraceId) != appTrace || hex.EncodeToString(ingest.ParentSpanId) != appSpan {
		t.Errorf("ingest span trace %x parent %x, want %s / %s", ingest.TraceId, ingest.ParentSpanId, appTrace, appSpan)
	}
	attempts := map[string]bool{}
	for _, sp := range rc.named("webhook delivery erp") {
		if hex.EncodeToString(sp.TraceId) != appTrace || string(sp.ParentSpanId) != string(ingest.SpanId) {
			t.Errorf("attempt span %s: trace %x parent %x, want the ingest span %x", sp.Name, sp.TraceId, sp.ParentSpanId, ingest.SpanId)
		}
		attempts[spanAttr(sp, "hookgate.attempt")] = true
		if spanAttr(sp, "hookgate.route") != "erp" || spanAttr(sp, "hookgate.event.type") != "task.created" {
			t.Errorf("attempt span attributes %v", sp.Attributes)
		}
	}
	if !attempts["1"] || !attempts["2"] {
		t.Errorf("attempt numbers seen %v, want 1 and 2 (the second after the restart)", attempts)
	}
	id := ans["id"].(string)
	st := openStore(t, g.storage)
	ev, err := st.Event(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, did := range ev.Deliveries {
		atts, _ := st.Attempts(did)
		for _, a := range atts {
			if a.TraceID != appTrace {
				t.Errorf("attempt %d of %s records trace id %q", a.N, did, a.TraceID)
			}
		}
	}
}

var metricLine = regexp.MustCompile(`(?m)^(hookgate_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$`)

func scrape(t *testing.T, g *gateway) map[string]float64 {
	t.Helper()
	m, err := fetchMetrics(g.admin)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fetchMetrics reads hookgate's series from a Caddy admin endpoint's
// /metrics, keyed by name and labels as printed (name{label="v",...}).
func fetchMetrics(admin string) (map[string]float64, error) {
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, m := range metricLine.FindAllStringSubmatch(string(body), -1) {
		v, _ := strconv.ParseFloat(m[3], 64)
		out[m[1]+m[2]] = v
	}
	return out, nil
}

func TestMetricsCountExactlyAndSurviveReloads(t *testing.T) {
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/bad"):
			w.WriteHeader(http.StatusBadRequest)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	cfg := routesConfig(`
		route m_ok {
			topics metric.*
			url `+s.URL+`/ok
		}
		route m_bad {
			topics metric.*
			url `+s.URL+`/bad
		}
		route m_rule {
			topics metric.*
			url `+s.URL+`/ok
			when `+"`"+`event.data.missing.field == 1`+"`"+`
		}`, "")
	g := startGateway(t, cfg)
	before := scrape(t, g)
	post := func(n int) {
		for i := 0; i < n; i++ {
			if code, ans := g.post("/events", `{"type":"metric.x","data":{}}`); code != 202 {
				t.Fatalf("%d %v", code, ans)
			}
		}
	}
	delta := func(after map[string]float64, key string) float64 { return after[key] - before[key] }
	post(3)
	s.waitFor(t, 6, 10*time.Second)
	var m map[string]float64
	eventually(t, 10*time.Second, "exact counts", func() bool {
		m = scrape(t, g)
		return delta(m, `hookgate_deliveries_total{class="",outcome="delivered",route="m_ok"}`) == 3 &&
			delta(m, `hookgate_deliveries_total{class="http_4xx",outcome="dead",route="m_bad"}`) == 3 &&
			m[`hookgate_dead{route="m_bad"}`] == 3 && m[`hookgate_pending{route="m_ok"}`] == 0
	})
	checks := map[string]float64{
		`hookgate_events_ingested_total{source="api"}`: 3,
		`hookgate_rule_errors_total{route="m_rule"}`:   3,
	}
	for k, want := range checks {
		if got := delta(m, k); got != want {
			t.Errorf("%s grew by %v, want %v", k, got, want)
		}
	}
	if m[`hookgate_dead{route="m_bad"}`] != 3 || m[`hookgate_pending{route="m_ok"}`] != 0 || m[`hookgate_circuit_open{route="m_ok"}`] != 0 {
		t.Errorf("gauges: dead %v pending %v circuit %v", m[`hookgate_dead{route="m_bad"}`], m[`hookgate_pending{route="m_ok"}`], m[`hookgate_circuit_open{route="m_ok"}`])
	}
	if m[`hookgate_delivery_duration_seconds_count{route="m_ok"}`]-before[`hookgate_delivery_duration_seconds_count{route="m_ok"}`] != 3 {
		t.Errorf("duration histogram count did not grow by 3")
	}
	// Two reloads: no duplicate registration, counters keep counting.
	g.load(cfg)
	g.load(cfg)
	post(2)
	s.waitFor(t, 10, 10*time.Second)
	eventually(t, 10*time.Second, "counts after reloads", func() bool {
		m = scrape(t, g)
		return delta(m, `hookgate_deliveries_total{class="",outcome="delivered",route="m_ok"}`) == 5
	})
	if got := delta(m, `hookgate_events_ingested_total{source="api"}`); got != 5 {
		t.Errorf("events ingested grew by %v after reloads, want 5", got)
	}
}

func TestSecretsStayOutOfLogsAndAdmin(t *testing.T) {
	const headerSecret = "hdr-SECRET-7f3a9c"
	const signSecret = "sign-SECRET-c0ffee"
	const urlSecret = "url-SECRET-b00c"
	t.Setenv("HOOKGATE_TEST_HDR_SECRET", headerSecret)
	t.Setenv("HOOKGATE_TEST_SIGN_SECRET", signSecret)
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte("nope"))
	})
	g := startGateway(t, `{
	admin {ADMIN}
	persist_config off
	log {
		output file `+logFile+`
		level DEBUG
	}
	webhooks {
		storage {STORAGE}
		egress default {
			allow 127.0.0.1/32
		}
		route erp {
			topics task.*
			url `+s.URL+`/erp?token=`+urlSecret+`
			header Authorization "Bearer {env.HOOKGATE_TEST_HDR_SECRET}"
			sign {env.HOOKGATE_TEST_SIGN_SECRET}
			retry {
				schedule 100ms
			}
		}
		route closed {
			topics task.*
			url http://127.0.0.1:1/x?token=`+urlSecret+`
			retry {
				schedule 100ms
			}
		}
	}
}
http://127.0.0.1:{PORT} {
	webhook_ingest /events
}
`)
	code, ans := g.post("/events", `{"type":"task.created","data":{"n":1}}`)
	if code != 202 {
		t.Fatalf("%d %v", code, ans)
	}
	s.waitFor(t, 2, 10*time.Second)
	id := ans["id"].(string)
	var admin []string
	eventually(t, 10*time.Second, "both deliveries dead", func() bool {
		resp, err := http.Get("http://" + g.admin + "/webhooks/events/" + id)
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		admin = []string{string(b)}
		return strings.Count(string(b), `"dead"`) >= 2
	})
	for _, path := range []string{"/webhooks/stats", "/webhooks/deliveries?status=dead", "/config/"} {
		resp, err := http.Get("http://" + g.admin + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		admin = append(admin, string(b))
	}
	g.stop()
	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logs), "delivery attempt failed") && !strings.Contains(string(logs), "delivery dead") {
		t.Fatalf("the log has no delivery lines; is it the right file?\n%s", logs)
	}
	for _, secret := range []string{headerSecret, signSecret} {
		if strings.Contains(string(logs), secret) {
			t.Errorf("log contains secret %q", secret)
		}
		for i, a := range admin {
			if strings.Contains(a, secret) {
				t.Errorf("admin answer %d contains secret %q", i, secret)
			}
		}
	}
	// The URL's token is config, which /config/ shows by design; it must
	// not leak through attempt errors into logs or the event look-up.
	if strings.Contains(string(logs), urlSecret) {
		t.Errorf("log contains the URL's token")
	}
	if strings.Contains(admin[0], urlSecret) {
		t.Errorf("event look-up contains the URL's token")
	}
}

func TestTracingReloadsLeakNoGoroutines(t *testing.T) {
	newOTLPReceiver(t)
	s := newSink(t, nil)
	cfg := func(i int) string {
		return routesConfig(fmt.Sprintf(`
		route r%d {
			topics t.*
			url %s
		}`, i%2, s.URL), "")
	}
	g := startGateway(t, cfg(0))
	sent := 0
	for i := 1; i <= 2; i++ {
		g.load(cfg(i))
		if code, _ := g.post("/events", `{"type":"t.x","data":1}`); code != 202 {
			t.Fatalf("post %d", code)
		}
		sent++
		s.waitFor(t, sent, 10*time.Second)
	}
	base := settledGoroutines()
	for i := 3; i <= 22; i++ {
		g.load(cfg(i))
		if code, _ := g.post("/events", `{"type":"t.x","data":1}`); code != 202 {
			t.Fatalf("post %d", code)
		}
		sent++
		s.waitFor(t, sent, 10*time.Second)
	}
	after := settledGoroutines()
	if after > base+5 {
		t.Errorf("goroutines grew from %d to %d over 20 reloads with tracing on", base, after)
	}
	t.Logf("goroutines with tracing: %d after 2 reloads, %d after 22", base, after)
}

// TestTraceContextPassesThroughWithoutTracing checks the path with no
// exporter configured, where hookgate records no spans: the trace
// context an event came with (traceparent and tracestate) reaches the
// endpoint unchanged, and an event that came without sends none.
func TestTraceContextPassesThroughWithoutTracing(t *testing.T) {
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(k, "")
	}
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const state = "vendor=opaque,other=1"
	s := newSink(t, nil)
	g := startGateway(t, routesConfig(`
		route erp {
			topics task.*
			url `+s.URL+`/erp
		}`, ""))
	if code, ans := g.post("/events", `{"type":"task.created","data":{}}`, "traceparent", parent, "tracestate", state); code != 202 {
		t.Fatalf("%d %v", code, ans)
	}
	s.waitFor(t, 1, 10*time.Second)
	if code, ans := g.post("/events", `{"type":"task.created","data":{}}`); code != 202 {
		t.Fatalf("%d %v", code, ans)
	}
	got := s.waitFor(t, 2, 10*time.Second)
	if tp, ts := got[0].Header.Get("Traceparent"), got[0].Header.Get("Tracestate"); tp != parent || ts != state {
		t.Errorf("endpoint got traceparent %q tracestate %q, want %q %q", tp, ts, parent, state)
	}
	if tp, ok := got[1].Header["Traceparent"]; ok {
		t.Errorf("an event without trace context was sent with traceparent %q", tp)
	}
}
