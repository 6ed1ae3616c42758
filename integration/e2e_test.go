package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/hookgate/hookgate/persist"
)

// baseConfig is a Caddyfile template with one route to a sink; %s is the
// route block's extra lines.
func baseConfig(sinkURL, extra string) string {
	return routesConfig(`
		route erp {
			topics task.finished task.created
			url `+sinkURL+`/erp
			header X-Source hookgate
			header Authorization "Bearer {env.HOOKGATE_TEST_TOKEN}"
			`+extra+`
		}`, "")
}

func TestDeliveryHeadersAndBody(t *testing.T) {
	t.Setenv("HOOKGATE_TEST_TOKEN", "s3cret-token")
	s := newSink(t, nil)
	g := startGateway(t, baseConfig(s.URL, ""))

	before := time.Now().Unix()
	code, ans := g.post("/events", `{"type":"task.finished","id":"T-1_a:b","timestamp":"2026-11-23T10:00:00Z","data":{"task_id":"T-1", "n": [1, 2.50]}}`)
	if code != http.StatusAccepted {
		t.Fatalf("status %d, answer %v", code, ans)
	}
	if ans["id"] != "T-1_a:b" || fmt.Sprint(ans["routes"]) != "[erp]" {
		t.Fatalf("answer %v", ans)
	}
	got := s.waitFor(t, 1, 10*time.Second)[0]
	if got.Path != "/erp" {
		t.Errorf("path %q", got.Path)
	}
	want := `{"id":"T-1_a:b","type":"task.finished","timestamp":"2026-11-23T10:00:00Z","data":{"task_id":"T-1", "n": [1, 2.50]}}`
	if string(got.Body) != want {
		t.Errorf("body\n got %s\nwant %s", got.Body, want)
	}
	h := got.Header
	checks := map[string]string{
		"Content-Type":  "application/json",
		"Webhook-Id":    "T-1_a:b",
		"X-Source":      "hookgate",
		"Authorization": "Bearer s3cret-token",
	}
	for k, v := range checks {
		if h.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
		}
	}
	if !strings.HasPrefix(h.Get("User-Agent"), "hookgate/") {
		t.Errorf("User-Agent %q", h.Get("User-Agent"))
	}
	var ts int64
	fmt.Sscan(h.Get("Webhook-Timestamp"), &ts)
	if ts < before || ts > time.Now().Unix()+1 {
		t.Errorf("webhook-timestamp %d not the attempt's time (posted at %d)", ts, before)
	}

	// Unmatched events are acknowledged with no routes and delivered nowhere.
	code, ans = g.post("/events", `{"type":"user.created","data":{}}`)
	if code != http.StatusAccepted || fmt.Sprint(ans["routes"]) != "[]" {
		t.Fatalf("unmatched: %d %v", code, ans)
	}
}

func TestRetryThenSuccess(t *testing.T) {
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	g := startGateway(t, baseConfig(s.URL, "retry {\n schedule 200ms 200ms\n}"))
	code, ans := g.post("/events", `{"type":"task.created","data":{"x":1}}`)
	if code != http.StatusAccepted {
		t.Fatalf("%d %v", code, ans)
	}
	got := s.waitFor(t, 2, 10*time.Second)
	if got[0].Header.Get("Webhook-Id") != got[1].Header.Get("Webhook-Id") {
		t.Errorf("webhook-id changed between attempts")
	}
	if string(got[0].Body) != string(got[1].Body) {
		t.Errorf("body changed between attempts")
	}
	if gap := got[1].At.Sub(got[0].At); gap < 150*time.Millisecond {
		t.Errorf("retry came %s after the first attempt; schedule says 200ms±20%%", gap)
	}
	id := ans["id"].(string)
	g.stop()
	d := onlyDelivery(t, g.storage, id)
	if d.Status != persist.StatusDelivered || d.Attempts != 2 || d.LastClass != "" {
		t.Errorf("delivery %+v", d)
	}
}

func TestClientErrorIsDeadWithoutRetry(t *testing.T) {
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"nope"}`))
	})
	g := startGateway(t, baseConfig(s.URL, "retry {\n schedule 100ms 100ms 100ms\n}"))
	code, ans := g.post("/events", `{"type":"task.created","data":{}}`)
	if code != http.StatusAccepted {
		t.Fatalf("%d %v", code, ans)
	}
	s.waitFor(t, 1, 10*time.Second)
	id := ans["id"].(string)
	// Three retries would have come within a second.
	time.Sleep(time.Second)
	if n := len(s.requests()); n != 1 {
		t.Fatalf("sink got %d requests; a 400 must not be retried", n)
	}
	g.stop()
	d := onlyDelivery(t, g.storage, id)
	if d.Status != persist.StatusDead || d.Attempts != 1 || d.LastClass != "http_4xx" || d.LastStatus != 400 {
		t.Errorf("delivery %+v", d)
	}
	atts := attempts(t, g.storage, d.ID)
	if len(atts) != 1 || string(atts[0].Response) != `{"error":"nope"}` {
		t.Errorf("attempts %+v", atts)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	g := startGateway(t, baseConfig(s.URL, "retry {\n schedule 100ms\n}"))
	if code, ans := g.post("/events", `{"type":"task.created","data":{}}`); code != http.StatusAccepted {
		t.Fatalf("%d %v", code, ans)
	}
	got := s.waitFor(t, 2, 15*time.Second)
	if gap := got[1].At.Sub(got[0].At); gap < 1900*time.Millisecond {
		t.Errorf("retry came %s after a 429 with Retry-After: 2", gap)
	}
}

func TestBatchAndDuplicates(t *testing.T) {
	s := newSink(t, nil)
	g := startGateway(t, baseConfig(s.URL, ""))
	code, ans := g.post("/events", `[{"type":"task.created","id":"b1","data":1},{"type":"task.finished","id":"b2","data":2},{"type":"other","data":3}]`)
	if code != http.StatusAccepted {
		t.Fatalf("%d %v", code, ans)
	}
	ids := ans["ids"].([]any)
	if len(ids) != 3 || ids[0] != "b1" || ids[1] != "b2" || !strings.HasPrefix(ids[2].(string), "evt_") {
		t.Fatalf("ids %v", ids)
	}
	s.waitFor(t, 2, 10*time.Second)

	// The same id again: 200, the original id, nothing new stored.
	code, ans = g.post("/events", `{"type":"task.created","id":"b1","data":"changed"}`)
	if code != http.StatusOK || ans["id"] != "b1" || ans["duplicate"] != true {
		t.Fatalf("duplicate: %d %v", code, ans)
	}
	// Idempotency-Key does the same for a single event.
	code, ans = g.post("/events", `{"type":"task.created","data":1}`, "Idempotency-Key", "key-1")
	if code != http.StatusAccepted || ans["id"] != "key-1" {
		t.Fatalf("idempotency key: %d %v", code, ans)
	}
	code, ans = g.post("/events", `{"type":"task.created","data":1}`, "Idempotency-Key", "key-1")
	if code != http.StatusOK || ans["duplicate"] != true || ans["id"] != "key-1" {
		t.Fatalf("idempotency key repeat: %d %v", code, ans)
	}
	// A batch mixing old and new ids stores only the new one.
	code, ans = g.post("/events", `[{"type":"task.created","id":"b2","data":1},{"type":"task.created","id":"b3","data":1}]`)
	if code != http.StatusAccepted || fmt.Sprint(ans["duplicates"]) != "[0]" {
		t.Fatalf("mixed batch: %d %v", code, ans)
	}
	s.waitFor(t, 4, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	if n := len(s.requests()); n != 4 {
		t.Fatalf("sink got %d requests, want 4 (b1, b2, key-1, b3)", n)
	}
}

func TestIngestRejections(t *testing.T) {
	s := newSink(t, nil)
	t.Setenv("HOOKGATE_TEST_INGEST", "t0ken") // expanded when the config loads
	g := startGateway(t, `{
	admin {ADMIN}
	persist_config off
	webhooks {
		storage {STORAGE}
		# The sinks listen on loopback, which egress policies deny unless allowed.
		egress default {
			allow 127.0.0.1/32
		}
		route erp {
			topics *
			url `+s.URL+`
		}
	}
}
http://127.0.0.1:{PORT} {
	webhook_ingest /events {
		max_body 1KiB
		max_batch 2
	}
	webhook_ingest /private {
		auth bearer {env.HOOKGATE_TEST_INGEST}
	}
}
`)
	big := `{"type":"a","data":"` + strings.Repeat("x", 2000) + `"}`
	cases := []struct {
		name, path, ctype, method, body string
		headers                         []string
		status                          int
		code                            string
	}{
		{"oversize", "/events", "application/json", "POST", big, nil, 413, "body_too_large"},
		{"content type", "/events", "text/plain", "POST", `{"type":"a","data":1}`, nil, 415, "unsupported_media_type"},
		{"charset ok", "/events", "application/json; charset=utf-8", "POST", `{"type":"a","data":1}`, nil, 202, ""},
		{"method", "/events", "application/json", "GET", ``, nil, 405, "method_not_allowed"},
		{"malformed", "/events", "application/json", "POST", `{"type":`, nil, 400, "invalid_event"},
		{"unknown field", "/events", "application/json", "POST", `{"type":"a","data":1,"tpye":"b"}`, nil, 400, "invalid_event"},
		{"batch too big", "/events", "application/json", "POST", `[{"type":"a","data":1},{"type":"a","data":1},{"type":"a","data":1}]`, nil, 413, "batch_too_large"},
		{"empty batch", "/events", "application/json", "POST", `[]`, nil, 400, "invalid_event"},
		{"no auth", "/private", "application/json", "POST", `{"type":"a","data":1}`, nil, 401, "unauthorized"},
		{"wrong auth", "/private", "application/json", "POST", `{"type":"a","data":1}`, []string{"Authorization", "Bearer nope"}, 401, "unauthorized"},
		{"good auth", "/private", "application/json", "POST", `{"type":"a","data":1}`, []string{"Authorization", "Bearer t0ken"}, 202, ""},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, g.ingest+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", c.ctype)
		for i := 0; i+1 < len(c.headers); i += 2 {
			req.Header.Set(c.headers[i], c.headers[i+1])
		}
		code, ans := g.do(req)
		if code != c.status {
			t.Errorf("%s: status %d, want %d (%v)", c.name, code, c.status, ans)
			continue
		}
		if c.code != "" && (ans["error"] != c.code || ans["message"] == "") {
			t.Errorf("%s: answer %v, want error %q with a message", c.name, ans, c.code)
		}
	}
	// The batch error names the element.
	_, ans := g.post("/events", `[{"type":"a","data":1},{"type":"a b","data":1}]`)
	if ans["index"] != float64(1) {
		t.Errorf("batch error index: %v", ans)
	}
}

func TestReloadKeepsDelivering(t *testing.T) {
	a := newSink(t, nil)
	b := newSink(t, nil)
	cfg := func(url, name string) string {
		return `{
	admin {ADMIN}
	persist_config off
	webhooks {
		storage {STORAGE}
		# The sinks listen on loopback, which egress policies deny unless allowed.
		egress default {
			allow 127.0.0.1/32
		}
		route ` + name + ` {
			topics task.*
			url ` + url + `
		}
	}
}
http://127.0.0.1:{PORT} {
	webhook_ingest /events
}
`
	}
	g := startGateway(t, cfg(a.URL, "one"))
	for i := 0; i < 5; i++ {
		if code, ans := g.post("/events", `{"type":"task.x","data":1}`); code != 202 {
			t.Fatalf("%d %v", code, ans)
		}
	}
	a.waitFor(t, 5, 10*time.Second)
	for round := 0; round < 3; round++ {
		g.load(cfg(b.URL, "two"))
		code, ans := g.post("/events", `{"type":"task.x","data":1}`)
		if code != 202 || fmt.Sprint(ans["routes"]) != "[two]" {
			t.Fatalf("after reload: %d %v", code, ans)
		}
		b.waitFor(t, round+1, 10*time.Second)
		g.load(cfg(a.URL, "one"))
		if code, _ := g.post("/events", `{"type":"task.x","data":1}`); code != 202 {
			t.Fatalf("after reload back: %d", code)
		}
		a.waitFor(t, 6+round, 10*time.Second)
	}
}

// stop stops Caddy early (the cleanup's Stop is then a no-op), so a test
// can open the outbox and look inside.
func (g *gateway) stop() {
	g.t.Helper()
	if err := caddy.Stop(); err != nil {
		g.t.Fatalf("stopping caddy: %v", err)
	}
}

// openStore opens a stopped gateway's outbox.
func openStore(t *testing.T, dir string) *persist.Badger {
	t.Helper()
	st, err := persist.Open(persist.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func onlyDelivery(t *testing.T, dir, eventID string) *persist.Delivery {
	t.Helper()
	st := openStore(t, dir)
	defer st.Close()
	ev, err := st.Event(eventID)
	if err != nil {
		t.Fatalf("event %s: %v", eventID, err)
	}
	if len(ev.Deliveries) != 1 {
		t.Fatalf("event %s has deliveries %v, want one", eventID, ev.Deliveries)
	}
	d, err := st.Delivery(ev.Deliveries[0])
	if err != nil {
		t.Fatalf("delivery %s: %v", ev.Deliveries[0], err)
	}
	return d
}

func attempts(t *testing.T, dir, deliveryID string) []persist.Attempt {
	t.Helper()
	st := openStore(t, dir)
	defer st.Close()
	a, err := st.Attempts(deliveryID)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
