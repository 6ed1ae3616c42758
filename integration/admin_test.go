package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// adminAnswer is one admin API answer.
type adminAnswer struct {
	code   int
	header http.Header
	raw    []byte
	body   map[string]any
}

// adminCall makes a request to the gateway's admin API.
func (g *gateway) adminCall(method, path string) adminAnswer {
	g.t.Helper()
	req, err := http.NewRequest(method, "http://"+g.admin+path, nil)
	if err != nil {
		g.t.Fatal(err)
	}
	resp, err := client.Do(req)
	// Caddy replaces its admin server at each load: a connection the old
	// listener had queued is reset when it closes. A dial that failed
	// sent nothing, so it is tried again.
	for i := 0; i < 5 && isDialError(err); i++ {
		time.Sleep(50 * time.Millisecond)
		resp, err = client.Do(req)
	}
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := adminAnswer{code: resp.StatusCode, header: resp.Header, raw: raw}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		g.t.Fatalf("%s %s: answer is not a JSON object: %q", method, path, raw)
	}
	return a
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// adminOK makes a request that must answer 200 and returns the answer.
func (g *gateway) adminOK(method, path string) map[string]any {
	g.t.Helper()
	a := g.adminCall(method, path)
	if a.code != http.StatusOK {
		g.t.Fatalf("%s %s: %d %s", method, path, a.code, a.raw)
	}
	return a.body
}

// wantAdminError checks an admin answer is a JSON error with the status
// and code, and a message.
func wantAdminError(t *testing.T, a adminAnswer, status int, code string) {
	t.Helper()
	if a.code != status || a.body["error"] != code || a.body["message"] == "" || a.body["message"] == nil {
		t.Errorf("got %d %s, want %d with error %q and a message", a.code, a.raw, status, code)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
}

// routeStat returns one route's entry of GET /webhooks/stats.
func (g *gateway) routeStat(route string) map[string]any {
	g.t.Helper()
	for _, r := range g.adminOK("GET", "/webhooks/stats")["routes"].([]any) {
		if m := r.(map[string]any); m["route"] == route {
			return m
		}
	}
	g.t.Fatalf("route %s not in stats", route)
	return nil
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

// listIDs pages through GET /webhooks/deliveries with query q.
func (g *gateway) listIDs(q url.Values, limit int) []string {
	g.t.Helper()
	var ids []string
	q.Set("limit", fmt.Sprint(limit))
	for pages := 0; ; pages++ {
		if pages > 10000 {
			g.t.Fatal("listing does not end")
		}
		ans := g.adminOK("GET", "/webhooks/deliveries?"+q.Encode())
		ds := ans["deliveries"].([]any)
		if len(ds) > limit {
			g.t.Fatalf("page of %d with limit %d", len(ds), limit)
		}
		for _, d := range ds {
			ids = append(ids, d.(map[string]any)["id"].(string))
		}
		next, _ := ans["next"].(string)
		if next == "" {
			return ids
		}
		q.Set("cursor", next)
	}
}

func TestAdminAPI(t *testing.T) {
	// Events with "fail" get 400 (dead at once), "binary" a non-UTF-8
	// body; the others 200.
	var s *sink
	s = newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		body := string(s.requests()[n].Body)
		switch {
		case strings.Contains(body, `"fail"`):
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"nope"}`))
		case strings.Contains(body, `"binary"`):
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte{0xff, 0xfe, 0x00, 0x01})
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	g := startGateway(t, operateConfig(`
		route erp {
			topics task.*
			url `+s.URL+`/erp
		}
		route other {
			topics other.*
			url `+s.URL+`/other
		}`))

	var okIDs []string
	for i := 0; i < 5; i++ {
		okIDs = append(okIDs, postEvent(t, g, "task.ok"))
	}
	for i := 0; i < 3; i++ {
		if code, ans := g.post("/events", fmt.Sprintf(`{"type":"task.bad","id":"bad-%d","data":{"kind":"fail"}}`, i)); code != http.StatusAccepted {
			t.Fatalf("%d %v", code, ans)
		}
	}
	_, ans := g.post("/events", `{"type":"task.bad","id":"bin","data":{"kind":"binary"}}`)
	binID := ans["id"].(string)
	s.waitFor(t, 9, 10*time.Second)
	eventually(t, 10*time.Second, "all deliveries final", func() bool {
		st := g.routeStat("erp")
		return num(st["pending"]) == 0 && num(st["delivered"]) == 5 && num(st["dead"]) == 4
	})

	t.Run("stats", func(t *testing.T) {
		st := g.routeStat("erp")
		if st["state"] != "active" || st["circuit"] != "closed" || st["last_success"] == nil || st["last_failure"] == nil {
			t.Errorf("erp stats %v", st)
		}
		if st := g.routeStat("other"); num(st["pending"]) != 0 || num(st["delivered"]) != 0 {
			t.Errorf("other stats %v", st)
		}
	})

	t.Run("event", func(t *testing.T) {
		ev := g.adminOK("GET", "/webhooks/events/bad-1")
		e := ev["event"].(map[string]any)
		if e["id"] != "bad-1" || e["type"] != "task.bad" || fmt.Sprint(e["routes"]) != "[erp]" ||
			fmt.Sprint(e["data"]) != "map[kind:fail]" || e["time"] == nil || e["received"] == nil {
			t.Errorf("event %v", e)
		}
		ds := ev["deliveries"].([]any)
		if len(ds) != 1 {
			t.Fatalf("deliveries %v", ds)
		}
		d := ds[0].(map[string]any)
		if d["route"] != "erp" || d["status"] != "dead" || num(d["attempts"]) != 1 || d["last_class"] != "http_4xx" || num(d["last_status"]) != 400 {
			t.Errorf("delivery %v", d)
		}
		h := d["history"].([]any)
		if len(h) != 1 {
			t.Fatalf("history %v", h)
		}
		a := h[0].(map[string]any)
		if num(a["n"]) != 1 || num(a["status"]) != 400 || a["class"] != "http_4xx" || a["error"] != "endpoint answered 400" ||
			a["response"] != `{"error":"nope"}` || a["response_encoding"] != nil || a["time"] == nil || a["duration_ms"] == nil {
			t.Errorf("attempt %v", a)
		}
		// A body that is not UTF-8 comes base64-encoded.
		d = g.adminOK("GET", "/webhooks/events/"+binID)["deliveries"].([]any)[0].(map[string]any)
		a = d["history"].([]any)[0].(map[string]any)
		if a["response"] != "//4AAQ==" || a["response_encoding"] != "base64" {
			t.Errorf("binary response %v", a)
		}
		// A delivered event.
		d = g.adminOK("GET", "/webhooks/events/"+okIDs[0])["deliveries"].([]any)[0].(map[string]any)
		if d["status"] != "delivered" || d["done"] == nil || d["due"] != nil {
			t.Errorf("delivered %v", d)
		}
		wantAdminError(t, g.adminCall("GET", "/webhooks/events/no-such-event"), 404, "not_found")
	})

	t.Run("deliveries", func(t *testing.T) {
		dead := g.listIDs(url.Values{"status": {"dead"}, "route": {"erp"}}, 1)
		if len(dead) != 4 {
			t.Errorf("dead: %v", dead)
		}
		if got := g.listIDs(url.Values{"status": {"delivered"}}, 2); len(got) != 5 {
			t.Errorf("delivered: %v", got)
		}
		if got := g.listIDs(url.Values{}, 3); len(got) != 9 {
			t.Errorf("all: %v", got)
		}
		if got := g.listIDs(url.Values{"status": {"pending"}}, 100); len(got) != 0 {
			t.Errorf("pending: %v", got)
		}
		if got := g.listIDs(url.Values{"route": {"other"}}, 100); len(got) != 0 {
			t.Errorf("other: %v", got)
		}
		page := g.adminOK("GET", "/webhooks/deliveries?status=dead&limit=2")
		d := page["deliveries"].([]any)[0].(map[string]any)
		if d["status"] != "dead" || d["event_id"] == "" || d["route"] != "erp" || d["last_error"] != "endpoint answered 400" {
			t.Errorf("listed delivery %v", d)
		}
		next := page["next"].(string)
		for _, q := range []string{
			"status=nope", "limit=0", "limit=1001", "limit=x", "cursor=garbage",
			"status=pending&cursor=" + next, // a cursor of another listing
		} {
			a := g.adminCall("GET", "/webhooks/deliveries?"+q)
			wantAdminError(t, a, 400, map[bool]string{true: "bad_cursor", false: "bad_request"}[strings.Contains(q, "cursor")])
		}
	})

	t.Run("retry", func(t *testing.T) {
		ev := g.adminOK("GET", "/webhooks/events/bad-0")
		id := ev["deliveries"].([]any)[0].(map[string]any)["id"].(string)
		before := len(s.requests())
		r := g.adminOK("POST", "/webhooks/deliveries/"+id+"/retry")
		if r["delivery"] != id || r["was"] != "dead" || r["route"] != "erp" {
			t.Errorf("retry answer %v", r)
		}
		s.waitFor(t, before+1, 10*time.Second)
		// Dead again (the sink still refuses it), with the attempt history
		// carried on.
		eventually(t, 10*time.Second, "the retried delivery dead again", func() bool {
			d := g.adminOK("GET", "/webhooks/events/bad-0")["deliveries"].([]any)[0].(map[string]any)
			return d["status"] == "dead" && num(d["attempts"]) == 2 && len(d["history"].([]any)) == 2
		})
		if st := g.routeStat("erp"); num(st["dead"]) != 4 || num(st["pending"]) != 0 {
			t.Errorf("stats after retry %v", st)
		}
		wantAdminError(t, g.adminCall("POST", "/webhooks/deliveries/no-such-delivery/retry"), 404, "not_found")
	})

	t.Run("pause and resume", func(t *testing.T) {
		if r := g.adminOK("POST", "/webhooks/routes/erp/pause"); r["paused"] != true || r["route"] != "erp" {
			t.Errorf("pause answer %v", r)
		}
		if st := g.routeStat("erp"); st["state"] != "paused" {
			t.Errorf("state %v after pause", st["state"])
		}
		before := len(s.requests())
		postEvent(t, g, "task.ok")
		time.Sleep(500 * time.Millisecond)
		if n := len(s.requests()); n != before {
			t.Fatalf("a paused route sent %d requests", n-before)
		}
		if st := g.routeStat("erp"); num(st["pending"]) != 1 {
			t.Errorf("pending %v while paused", st["pending"])
		}
		if r := g.adminOK("POST", "/webhooks/routes/erp/resume"); r["paused"] != false {
			t.Errorf("resume answer %v", r)
		}
		s.waitFor(t, before+1, 10*time.Second)
		wantAdminError(t, g.adminCall("POST", "/webhooks/routes/nope/pause"), 404, "unknown_route")
	})

	t.Run("replay", func(t *testing.T) {
		before := len(s.requests())
		r := g.adminOK("POST", "/webhooks/routes/erp/replay?status=dead&since=1h")
		if num(r["replayed"]) != 4 {
			t.Errorf("replay answer %v", r)
		}
		s.waitFor(t, before+4, 10*time.Second)
		eventually(t, 10*time.Second, "replayed deliveries final", func() bool {
			st := g.routeStat("erp")
			return num(st["pending"]) == 0 && num(st["dead"]) == 4
		})
		// Since a time after they died: nothing.
		future := url.QueryEscape(time.Now().Add(time.Minute).Format(time.RFC3339))
		if r := g.adminOK("POST", "/webhooks/routes/erp/replay?since="+future); num(r["replayed"]) != 0 {
			t.Errorf("replay since the future: %v", r)
		}
		if r := g.adminOK("POST", "/webhooks/routes/other/replay"); num(r["replayed"]) != 0 {
			t.Errorf("replay of a route with nothing dead: %v", r)
		}
		for q, code := range map[string]string{
			"status=pending": "bad_request", "status=x": "bad_request", "since=yesterday": "bad_request",
			"until=-5m": "bad_request", "limit=0": "bad_request", "since=1m&until=2h": "bad_request",
		} {
			wantAdminError(t, g.adminCall("POST", "/webhooks/routes/erp/replay?"+q), 400, code)
		}
		wantAdminError(t, g.adminCall("POST", "/webhooks/routes/nope/replay"), 404, "unknown_route")
		// A filter naming no route at all is a 404 too, not an empty page.
		wantAdminError(t, g.adminCall("GET", "/webhooks/deliveries?route=nope"), 404, "unknown_route")
		wantAdminError(t, g.adminCall("GET", "/webhooks/tail?route=nope"), 404, "unknown_route")
		if r := g.adminOK("GET", "/webhooks/deliveries?route=other&status=dead"); r["deliveries"] == nil {
			t.Errorf("known route with nothing dead: %v, want an empty page", r)
		}
	})

	t.Run("methods and paths", func(t *testing.T) {
		for _, c := range []struct{ method, path, allow string }{
			{"POST", "/webhooks/stats", "GET"},
			{"DELETE", "/webhooks/events/bad-0", "GET"},
			{"POST", "/webhooks/deliveries", "GET"},
			{"GET", "/webhooks/deliveries/x/retry", "POST"},
			{"GET", "/webhooks/routes/erp/replay", "POST"},
			{"PUT", "/webhooks/routes/erp/pause", "POST"},
			{"GET", "/webhooks/routes/erp/resume", "POST"},
		} {
			a := g.adminCall(c.method, c.path)
			wantAdminError(t, a, 405, "method_not_allowed")
			if got := a.header.Get("Allow"); got != c.allow {
				t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
			}
		}
		for _, p := range []string{"/webhooks/", "/webhooks/nope", "/webhooks/events/", "/webhooks/stats/x", "/webhooks/routes/erp/explode"} {
			wantAdminError(t, g.adminCall("GET", p), 404, "not_found")
		}
	})
}

// A config that names no webhooks app but has a webhook_ingest handler
// runs the app all the same (the handler loads it, with its defaults):
// the admin API answers for it, as the console does, rather than saying
// it is not configured.
func TestAdminWithImplicitWebhooksApp(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir()) // the default outbox goes under it
	g := startGateway(t, `{
	admin {ADMIN}
	persist_config off
}
http://127.0.0.1:{PORT} {
	webhook_ingest /events
}
`)
	if code, _ := g.post("/events", `{"type":"a.b","data":{}}`); code != http.StatusAccepted {
		t.Fatalf("ingest: %d", code)
	}
	stats := g.adminOK("GET", "/webhooks/stats")
	if routes, ok := stats["routes"].([]any); !ok || len(routes) != 0 {
		t.Errorf("stats %v, want no routes", stats)
	}
}

func TestAdminWithoutWebhooksApp(t *testing.T) {
	g := startGateway(t, `{
	admin {ADMIN}
	persist_config off
}
http://127.0.0.1:{PORT} {
	respond "hello"
}
`)
	a := g.adminCall("GET", "/webhooks/stats")
	wantAdminError(t, a, http.StatusServiceUnavailable, "not_configured")
	if !strings.Contains(a.body["message"].(string), "webhooks app is not configured") {
		t.Errorf("message %q", a.body["message"])
	}
	wantAdminError(t, g.adminCall("POST", "/webhooks/routes/x/pause"), http.StatusServiceUnavailable, "not_configured")
	wantAdminError(t, g.adminCall("POST", "/webhooks/stats"), 405, "method_not_allowed")
	// Caddy's own endpoints are unaffected.
	if a := g.adminCall("GET", "/config/"); a.code != http.StatusOK {
		t.Errorf("GET /config/: %d", a.code)
	}
}

func TestAdminReplayThousandDead(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	g := startGateway(t, operateConfig(`
		route erp {
			topics *
			url `+s.URL+`
			concurrency 32
		}`))
	const n = 1000
	for i := 0; i < n; i += 100 {
		events := make([]string, 100)
		for j := range events {
			events[j] = fmt.Sprintf(`{"type":"t","data":{"n":%d}}`, i+j)
		}
		g.postBatch(events)
	}
	eventually(t, 60*time.Second, "1,000 dead deliveries", func() bool {
		return num(g.routeStat("erp")["dead"]) == n
	})
	if got := g.listIDs(url.Values{"status": {"dead"}}, 1000); len(got) != n {
		t.Fatalf("%d listed dead", len(got))
	}

	failing.Store(false)
	start := time.Now()
	r := g.adminOK("POST", "/webhooks/routes/erp/replay?status=dead")
	if num(r["replayed"]) != n {
		t.Fatalf("replayed %v, want %d", r["replayed"], n)
	}
	eventually(t, 60*time.Second, "all replayed deliveries delivered", func() bool {
		st := g.routeStat("erp")
		return num(st["pending"]) == 0 && num(st["dead"]) == 0
	})
	t.Logf("1,000 dead deliveries replayed and delivered in %v", time.Since(start).Round(time.Millisecond))
	got := s.requests()
	ok := map[string]bool{}
	for _, rq := range got[n:] {
		ok[rq.Header.Get("Webhook-Id")] = true
	}
	if len(ok) != n {
		t.Fatalf("%d distinct events delivered after the replay, want %d", len(ok), n)
	}
	if got := g.listIDs(url.Values{"status": {"delivered"}}, 1000); len(got) != n {
		t.Fatalf("%d listed delivered", len(got))
	}
	// Attempts kept counting: the replay's is the second.
	d := g.adminOK("GET", "/webhooks/deliveries?status=delivered&limit=1")["deliveries"].([]any)[0].(map[string]any)
	if num(d["attempts"]) != 2 {
		t.Errorf("replayed delivery %v: want 2 attempts", d)
	}
}

func TestAdminNeverShowsSecrets(t *testing.T) {
	const (
		headerSecret = "hdr-s3cret-value-91"
		urlSecret    = "url-t0ken-in-query-73"
		pathSecret   = "T000-B000-path-s3cret-55"
	)
	signSecret := "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LWZvci1ob29rZ2F0ZQ=="
	t.Setenv("HOOKGATE_ADMIN_TEST_TOKEN", headerSecret)
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	closed := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	g := startGateway(t, operateConfig(`
		route signed {
			topics *
			url `+s.URL+`/hook?token=`+urlSecret+`
			header Authorization "Bearer {env.HOOKGATE_ADMIN_TEST_TOKEN}"
			sign `+signSecret+`
			retry {
				schedule 50ms
			}
		}
		route unreachable {
			topics *
			url http://user:pw-`+urlSecret+`@`+closed+`/services/`+pathSecret+`?token=`+urlSecret+`
			retry {
				schedule 50ms
			}
		}`))
	code, ans := g.post("/events", `{"type":"x","data":{"n":1}}`)
	if code != http.StatusAccepted {
		t.Fatalf("%d %v", code, ans)
	}
	id := ans["id"].(string)
	eventually(t, 20*time.Second, "both deliveries dead", func() bool {
		return num(g.routeStat("signed")["dead"]) == 1 && num(g.routeStat("unreachable")["dead"]) == 1
	})
	// The sink did get the secrets: the test would prove nothing if not.
	got := s.requests()[0]
	if !strings.Contains(got.Header.Get("Authorization"), headerSecret) || got.Header.Get("Webhook-Signature") == "" {
		t.Fatalf("sink got %v", got.Header)
	}
	signature := strings.TrimPrefix(got.Header.Get("Webhook-Signature"), "v1,")

	var answers []adminAnswer
	answers = append(answers,
		g.adminCall("GET", "/webhooks/stats"),
		g.adminCall("GET", "/webhooks/events/"+id),
		g.adminCall("GET", "/webhooks/deliveries"),
		g.adminCall("GET", "/webhooks/deliveries?status=dead"),
		g.adminCall("GET", "/webhooks/deliveries?route=unreachable&status=dead"),
	)
	ev := answers[1].body
	var unreachable map[string]any
	for _, d := range ev["deliveries"].([]any) {
		if d := d.(map[string]any); d["route"] == "unreachable" {
			unreachable = d
		}
		answers = append(answers, g.adminCall("POST", "/webhooks/deliveries/"+d.(map[string]any)["id"].(string)+"/retry"))
	}
	answers = append(answers,
		g.adminCall("POST", "/webhooks/routes/signed/replay"),
		g.adminCall("POST", "/webhooks/routes/signed/pause"),
		g.adminCall("GET", "/webhooks/stats"),
	)
	// The transport error names the endpoint, without its path, query or
	// credentials.
	if unreachable == nil {
		t.Fatalf("no delivery to the unreachable route in %s", answers[1].raw)
	}
	errText, _ := unreachable["last_error"].(string)
	if !strings.Contains(errText, "http://"+closed) {
		t.Errorf("last_error %q does not name the endpoint", errText)
	}
	for _, a := range answers {
		for _, secret := range []string{headerSecret, urlSecret, pathSecret, signSecret, strings.TrimPrefix(signSecret, "whsec_"), signature, "pw-"} {
			if strings.Contains(string(a.raw), secret) {
				t.Errorf("an admin answer holds the secret %q:\n%s", secret, a.raw)
			}
		}
	}
}

// TestAdminRetention: with a 2 s retention, a delivered event can be
// looked up, then is gone.
func TestAdminRetention(t *testing.T) {
	s := newSink(t, nil)
	g := startGateway(t, strings.Replace(operateConfig(`
		route erp {
			topics *
			url `+s.URL+`
		}`), "storage {STORAGE}", "storage {STORAGE}\n\t\tretention 2s\n\t\tdead_retention 2s", 1))
	id := postEvent(t, g, "x")
	s.waitFor(t, 1, 10*time.Second)
	eventually(t, 10*time.Second, "the delivery recorded", func() bool {
		a := g.adminCall("GET", "/webhooks/events/"+id)
		return a.code == 200 && a.body["deliveries"].([]any)[0].(map[string]any)["status"] == "delivered"
	})
	eventually(t, 10*time.Second, "the event expired", func() bool {
		return g.adminCall("GET", "/webhooks/events/"+id).code == http.StatusNotFound
	})
	if got := g.listIDs(url.Values{}, 100); len(got) != 0 {
		t.Errorf("deliveries after expiry: %v", got)
	}
}

// TestWebhooksCLI runs `caddy webhooks …` (this test binary acting as the
// caddy command) against the in-process gateway's admin endpoint.
func TestWebhooksCLI(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"refused by the sink"}`))
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	g := startGateway(t, operateConfig(`
		route erp {
			topics *
			url `+s.URL+`
		}`))
	_, ans := g.post("/events", `{"type":"task.finished","id":"cli-1","data":{"task":"T-1"}}`)
	if ans["id"] != "cli-1" {
		t.Fatalf("ingest %v", ans)
	}
	eventually(t, 10*time.Second, "the delivery dead", func() bool { return num(g.routeStat("erp")["dead"]) == 1 })

	run := func(args ...string) (string, error) {
		t.Helper()
		if !slices.Contains(args, "--address") {
			args = append(args, "--address", g.admin)
		}
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(append([]string{"webhooks"}, args...), "\x1f"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("caddy webhooks %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	wantLines := func(out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}

	out := mustRun("stats")
	wantLines(out, "ROUTE", "STATE", "PENDING", "DEAD", "erp", "active", "closed")

	t.Logf("caddy webhooks stats:\n%s", out)
	out = mustRun("events", "cli-1")
	t.Logf("caddy webhooks events cli-1:\n%s", out)
	wantLines(out, "Event", "cli-1", "task.finished", `{"task":"T-1"}`, "to erp: dead", "after 1 attempt",
		"http_4xx", "endpoint answered 400", "refused by the sink")

	out = mustRun("deliveries", "--status", "dead")
	t.Logf("caddy webhooks deliveries --status dead:\n%s", out)
	wantLines(out, "DELIVERY", "cli-1", "erp", "dead", "400 http_4xx")
	dlv := strings.Fields(strings.Split(out, "\n")[1])[0]

	out = mustRun("deliveries", "--json")
	var list struct {
		Deliveries []map[string]any `json:"deliveries"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Deliveries) != 1 || list.Deliveries[0]["id"] != dlv {
		t.Errorf("--json: %v %s", err, out)
	}

	out = mustRun("pause", "erp")
	wantLines(out, "route erp paused")
	wantLines(mustRun("stats"), "paused")
	wantLines(mustRun("resume", "erp"), "route erp resumed")

	out = mustRun("retry", dlv)
	wantLines(out, "delivery "+dlv, "requeued", "was dead")
	eventually(t, 10*time.Second, "the retry dead again", func() bool { return num(g.routeStat("erp")["dead"]) == 1 && len(s.requests()) == 2 })

	failing.Store(false)
	out = mustRun("replay", "erp", "--since", "1h")
	wantLines(out, "1 deliveries of route erp requeued")
	s.waitFor(t, 3, 10*time.Second)
	eventually(t, 10*time.Second, "delivered", func() bool { return num(g.routeStat("erp")["delivered"]) == 1 })
	wantLines(mustRun("events", "cli-1"), "to erp: delivered", "after 3 attempts")

	// Errors carry the API's message and fail the command.
	out, err := run("events", "no-such-event")
	if err == nil {
		t.Errorf("events of an unknown id succeeded:\n%s", out)
	}
	wantLines(out, "no event", "404")
	out, err = run("deliveries", "--cursor", "garbage")
	if err == nil {
		t.Errorf("bad cursor succeeded:\n%s", out)
	}
	wantLines(out, "cursor", "400")
	out, err = run("stats", "--address", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	if err == nil {
		t.Errorf("stats against no Caddy succeeded:\n%s", out)
	}
	wantLines(out, "--address")
}
