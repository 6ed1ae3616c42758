package module

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/hookgate/hookgate/persist"
)

func TestRedactURLs(t *testing.T) {
	cases := []struct{ in, want string }{
		{"endpoint answered 500", "endpoint answered 500"},
		{`Post "https://hooks.slack.com/services/T0/B0/XXXX": dial tcp: lookup hooks.slack.com: no such host`,
			`Post "https://hooks.slack.com/…": dial tcp: lookup hooks.slack.com: no such host`},
		{`Post "http://user:***@127.0.0.1:8080/x?token=abc": EOF`, `Post "http://127.0.0.1:8080/…": EOF`},
		{`Post "http://127.0.0.1:8080": EOF`, `Post "http://127.0.0.1:8080": EOF`},
		{`Post "https://h.example?k=v": x; then https://other.example/p#f`, `Post "https://h.example/…": x; then https://other.example/…`},
		{"no scheme here: host/path?q=1", "no scheme here: host/path?q=1"},
	}
	for _, c := range cases {
		if got := RedactURLs(c.in); got != c.want {
			t.Errorf("RedactURLs(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestResponseText(t *testing.T) {
	cut := strings.Repeat("a", adminResponseKeep-1) + "é" // é is 2 bytes: the limit cuts it
	cases := []struct {
		name      string
		in        []byte
		text      string
		encoding  string
		truncated bool
	}{
		{"empty", nil, "", "", false},
		{"text", []byte(`{"ok":true} ünïcode`), `{"ok":true} ünïcode`, "", false},
		{"binary", []byte{0xff, 0x00, 0x10}, "/wAQ", "base64", false},
		{"rune cut by the limit", []byte(cut)[:adminResponseKeep], strings.Repeat("a", adminResponseKeep-1), "", false},
		{"at the limit", []byte(strings.Repeat("c", adminResponseKeep)), strings.Repeat("c", adminResponseKeep), "", false},
		{"over the limit", []byte(strings.Repeat("b", adminResponseKeep+1)), strings.Repeat("b", adminResponseKeep), "", true},
	}
	for _, c := range cases {
		text, enc, truncated := responseText(c.in)
		if text != c.text || enc != c.encoding || truncated != c.truncated {
			t.Errorf("%s: got (%.40q…, %q, %v), want (%.40q…, %q, %v)", c.name, text, enc, truncated, c.text, c.encoding, c.truncated)
		}
		if enc == "" && !utf8.ValidString(text) {
			t.Errorf("%s: text is not UTF-8", c.name)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	good := map[string]time.Time{
		"":                          {},
		"2026-11-22T10:00:00Z":      now.Add(-24 * time.Hour),
		"2026-11-23T11:00:00+01:00": now,
		"90m":                       now.Add(-90 * time.Minute),
		"2d":                        now.Add(-48 * time.Hour),
	}
	for in, want := range good {
		got, err := ParseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"yesterday", "-5m", "2026-11-22", "10"} {
		if _, err := ParseSince(in, now); err == nil {
			t.Errorf("ParseSince(%q) accepted", in)
		}
	}
}

func TestViewEvent(t *testing.T) {
	ev := &persist.Event{
		ID: "e1", Type: "t", Data: []byte(`{"a":1}`),
		Headers:     map[string]string{"x-github-event": "push", "authorization": "Bearer leaked", "x-hub-signature-256": "sha256=aa"},
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	v := ViewEvent(ev)
	if len(v.Headers) != 1 || v.Headers["x-github-event"] != "push" {
		t.Errorf("headers %v: want only x-github-event", v.Headers)
	}
	if v.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || string(v.Data) != `{"a":1}` || v.Routes == nil {
		t.Errorf("view %+v", v)
	}
	// A record whose data is not JSON still renders.
	ev.Data = []byte("not json")
	if b, err := json.Marshal(ViewEvent(ev)); err != nil || !strings.Contains(string(b), `"data":"not json"`) {
		t.Errorf("bad data: %s %v", b, err)
	}
}

// adminFor returns the admin API of an App whose engine is e (nil: the
// app has not started).
func adminFor(e *Engine) *adminAPI {
	app := &App{engine: new(atomic.Pointer[Engine]), startedCh: make(chan struct{})}
	if e != nil {
		app.engine.Store(e)
		close(app.startedCh)
	}
	return &adminAPI{app: app}
}

func callAdmin(t *testing.T, a *adminAPI, method, target string, ctx context.Context) (*httptest.ResponseRecorder, apiErrorBody) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	if ctx != nil {
		req = req.WithContext(ctx)
	}
	rec := httptest.NewRecorder()
	if err := a.serve(rec, req); err != nil {
		t.Fatalf("serve returned %v: the admin API must answer errors itself", err)
	}
	var body apiErrorBody
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	return rec, body
}

func TestAdminWithoutEngine(t *testing.T) {
	rec, body := callAdmin(t, &adminAPI{}, "GET", "/webhooks/stats", nil)
	if rec.Code != http.StatusServiceUnavailable || body.Error != "not_configured" || rec.Header().Get("Retry-After") == "" {
		t.Errorf("no app: %d %+v", rec.Code, body)
	}
	// Configured but not started: waits for the start, then says so.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	rec, body = callAdmin(t, adminFor(nil), "GET", "/webhooks/stats", ctx)
	if rec.Code != http.StatusServiceUnavailable || body.Error != "not_running" {
		t.Errorf("not started: %d %+v", rec.Code, body)
	}
	// Routing and methods are checked first.
	rec, body = callAdmin(t, &adminAPI{}, "DELETE", "/webhooks/stats", nil)
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET" || body.Error != "method_not_allowed" {
		t.Errorf("method: %d %+v", rec.Code, body)
	}
	rec, body = callAdmin(t, &adminAPI{}, "GET", "/webhooks/nope", nil)
	if rec.Code != http.StatusNotFound || body.Error != "not_found" || body.Message == "" {
		t.Errorf("path: %d %+v", rec.Code, body)
	}
}

func TestAdminOnEngine(t *testing.T) {
	e, err := openEngine(t.TempDir(), zap.NewNop(), persist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Destruct() })
	now := e.now()
	in := persist.Ingest{
		Event:      &persist.Event{ID: "ev1", Type: "t", Time: now, Received: now, Data: []byte(`{}`), Routes: []string{"r"}},
		Deliveries: []*persist.Delivery{{ID: "d1", EventID: "ev1", Route: "r", Status: persist.StatusPending, Created: now, Due: now.Add(time.Hour)}},
	}
	if _, err := e.store.Ingest(context.Background(), []persist.Ingest{in}); err != nil {
		t.Fatal(err)
	}
	e.enqueue(in)
	a := adminFor(e)

	rec, _ := callAdmin(t, a, "GET", "/webhooks/stats", nil)
	var stats statsAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &stats); err != nil || rec.Code != 200 ||
		len(stats.Routes) != 1 || stats.Routes[0].Route != "r" || stats.Routes[0].Pending != 1 {
		t.Fatalf("stats: %d %s", rec.Code, rec.Body)
	}
	// Retrying a pending delivery brings it forward and leaves the count.
	rec, _ = callAdmin(t, a, "POST", "/webhooks/deliveries/d1/retry", nil)
	// Route r is in the outbox but not in a config: the answer says the
	// delivery waits for it.
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"was": "pending"`) || !strings.Contains(rec.Body.String(), `"held": "removed"`) {
		t.Fatalf("retry: %d %s", rec.Code, rec.Body)
	}
	if d, _ := e.store.Delivery("d1"); d.Due.After(e.now()) {
		t.Errorf("retried delivery still due at %v", d.Due)
	}
	if n := e.pending.Load(); n != 1 {
		t.Errorf("pending %d after retrying a pending delivery", n)
	}
	// The pending listing shows the deliveries of an ordered route that
	// wait behind an earlier one of their key, marked waiting.
	var ordered []persist.Ingest
	for _, id := range []string{"o1", "o2"} {
		ordered = append(ordered, persist.Ingest{
			Event: &persist.Event{ID: "ev-" + id, Type: "t", Time: now, Received: now, Data: []byte(`{}`), Routes: []string{"o"}},
			Deliveries: []*persist.Delivery{{ID: id, EventID: "ev-" + id, Route: "o", Status: persist.StatusPending,
				Created: now, Due: now.Add(time.Hour), OrderKey: "k"}},
		})
	}
	if _, err := e.store.Ingest(context.Background(), ordered); err != nil {
		t.Fatal(err)
	}
	rec, _ = callAdmin(t, a, "GET", "/webhooks/deliveries?status=pending&route=o", nil)
	var list listAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || rec.Code != 200 || len(list.Deliveries) != 2 ||
		list.Deliveries[0].ID != "o1" || list.Deliveries[0].Waiting || list.Deliveries[1].ID != "o2" || !list.Deliveries[1].Waiting ||
		!strings.Contains(rec.Body.String(), `"waiting": true`) {
		t.Fatalf("pending listing of an ordered route: %d %s", rec.Code, rec.Body)
	}
	rec, body := callAdmin(t, a, "GET", "/webhooks/deliveries?status=pending&cursor=x", nil)
	if rec.Code != 400 || body.Error != "bad_cursor" {
		t.Errorf("bad cursor: %d %+v", rec.Code, body)
	}
	// The engine closed under the API: 503, not 500.
	e.store.Close()
	rec, body = callAdmin(t, a, "GET", "/webhooks/events/ev1", nil)
	if rec.Code != http.StatusServiceUnavailable || body.Error != "unavailable" {
		t.Errorf("closed outbox: %d %+v", rec.Code, body)
	}
}

// GET /webhooks/deliveries filters by event type and by a time window
// (RFC 3339 or a duration before now), and answers 400 to a bad one.
func TestAdminDeliveriesFilters(t *testing.T) {
	e, err := openEngine(t.TempDir(), zap.NewNop(), persist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Destruct() })
	now := e.now()
	var batch []persist.Ingest
	for i, typ := range []string{"order.created", "order.paid", "order.created"} {
		id := fmt.Sprintf("e%d", i)
		created := now.Add(time.Duration(i-2) * time.Hour) // 2h ago, 1h ago, now
		batch = append(batch, persist.Ingest{
			Event: &persist.Event{ID: id, Type: typ, Time: created, Received: created, Data: []byte(`{}`), Routes: []string{"r"}},
			Deliveries: []*persist.Delivery{{ID: "d" + id, EventID: id, EventType: typ, Route: "r",
				Status: persist.StatusPending, Created: created, Due: created.Add(24 * time.Hour)}},
		})
	}
	if _, err := e.store.Ingest(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	a := adminFor(e)
	ids := func(query string) string {
		t.Helper()
		rec, _ := callAdmin(t, a, "GET", "/webhooks/deliveries?"+query, nil)
		var list listAnswer
		if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || rec.Code != 200 {
			t.Fatalf("%s: %d %s", query, rec.Code, rec.Body)
		}
		var out []string
		for _, d := range list.Deliveries {
			out = append(out, d.ID+":"+d.EventType)
		}
		return strings.Join(out, " ")
	}
	for query, want := range map[string]string{
		"type=order.created":           "de0:order.created de2:order.created",
		"since=90m":                    "de1:order.paid de2:order.created",
		"until=90m":                    "de0:order.created",
		"type=order.created&since=90m": "de2:order.created",
		"type=order.refunded":          "",
		"since=" + now.Add(-time.Hour).Format(time.RFC3339Nano) + "&until=30m": "de1:order.paid",
	} {
		if got := ids(query); got != want {
			t.Errorf("%s: %q, want %q", query, got, want)
		}
	}
	for _, query := range []string{"since=yesterday", "until=-5m", "since=1h&until=2h"} {
		rec, body := callAdmin(t, a, "GET", "/webhooks/deliveries?"+query, nil)
		if rec.Code != 400 || body.Error != "bad_request" {
			t.Errorf("%s: %d %+v, want 400 bad_request", query, rec.Code, body)
		}
	}
}

// Stats carry each route's description, and no outbox part while the
// outbox takes work.
func TestAdminStatsDescription(t *testing.T) {
	te := startTestEngine(t, "", map[string]*Route{"erp": {URL: "http://127.0.0.1:9/", Description: "ERP <orders>"}}, nil)
	rec, _ := callAdmin(t, adminFor(te.Engine), "GET", "/webhooks/stats", nil)
	var stats statsAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &stats); err != nil || len(stats.Routes) != 1 ||
		stats.Routes[0].Description != "ERP <orders>" || stats.Outbox != nil {
		t.Errorf("stats: %d %s", rec.Code, rec.Body)
	}
}

// An attempt whose endpoint answered more than 4 KiB shows the first
// 4 KiB and says the rest was cut; one of exactly 4 KiB is whole.
func TestViewAttemptSaysResponseCut(t *testing.T) {
	long := persist.Attempt{N: 1, Response: []byte(strings.Repeat("x", responseKeep+1))}
	if v := ViewAttempt(long); len(v.Response) != responseKeep || !v.ResponseTruncated {
		t.Errorf("a longer response: %d bytes shown, truncated %v; want 4096 and true", len(v.Response), v.ResponseTruncated)
	}
	exact := persist.Attempt{N: 1, Response: []byte(strings.Repeat("x", responseKeep))}
	if v := ViewAttempt(exact); len(v.Response) != responseKeep || v.ResponseTruncated {
		t.Errorf("a 4 KiB response: %d bytes shown, truncated %v; want 4096 and false", len(v.Response), v.ResponseTruncated)
	}
	b, err := json.Marshal(ViewAttempt(long))
	if err != nil || !strings.Contains(string(b), `"response_truncated":true`) {
		t.Errorf("JSON %s (%v): want response_truncated", b, err)
	}
}
