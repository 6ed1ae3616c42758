package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/hookgate/hookgate/module"
	"github.com/hookgate/hookgate/persist"
)

func TestOverview(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ids := g.accept(1, nil)
	g.waitStatus(g.deliveryOf(ids[0], "erp"), persist.StatusDelivered)
	g.waitStatus(g.deliveryOf(ids[0], "crm"), persist.StatusDead)

	if a := g.get("/console/", false); a.status != http.StatusUnauthorized {
		t.Fatalf("without credentials: HTTP %d, want 401 from basic_auth", a.status)
	}
	a := g.get("/console/", true)
	if a.status != http.StatusOK {
		t.Fatalf("overview: HTTP %d\n%s", a.status, a.body)
	}
	mustContain(t, "overview", a.body,
		"<title>Routes · hookgate console</title>",
		`id="route-erp"`, `id="route-crm"`,
		`state-active`, `circuit closed`,
		`<svg class="chart"`, `<rect class="ok"`, `<rect class="bad"`, `<polyline class="p50"`,
		"Last hour on this node: 1 delivered, 0 failed",
		"Last hour on this node: 0 delivered, 1 failed attempts (1 dead)",
		`/console/routes/erp/pause`, `/console/routes/crm/replay`,
		`Signed in as <strong>alice</strong>`,
	)
	mustNotContain(t, "overview", a.body, "No authenticated user")
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options"} {
		if a.header.Get(h) == "" {
			t.Errorf("overview: no %s header", h)
		}
	}
	// The path without its slash is the overview too.
	if a := g.get("/console", true); a.status != http.StatusOK || !strings.Contains(a.body, `id="route-erp"`) {
		t.Errorf("/console: HTTP %d", a.status)
	}
	// Paths outside the console reach the next handler.
	if a := g.get("/consoles", true); strings.Contains(a.body, "hookgate console") {
		t.Errorf("/consoles was answered by the console")
	}
}

func TestOverviewEmptyAndAssets(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	a := g.get("/console/static/console.css", true)
	if a.status != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "text/css") {
		t.Fatalf("css: HTTP %d %s", a.status, a.header.Get("Content-Type"))
	}
	if a := g.get("/console/static/console.js", true); a.status != http.StatusOK || !strings.Contains(a.body, "EventSource") {
		t.Fatalf("js: HTTP %d", a.status)
	}
	if a := g.get("/console/static/nope.js", true); a.status != http.StatusNotFound {
		t.Fatalf("unknown asset: HTTP %d, want 404", a.status)
	}
	if a := g.get("/console/nowhere", true); a.status != http.StatusNotFound || !strings.Contains(a.body, "Page not found") {
		t.Fatalf("unknown page: HTTP %d", a.status)
	}
	// A fresh gateway: the charts say nothing happened.
	mustContain(t, "fresh overview", g.get("/console/", true).body, "no attempts", "No attempts in the last hour on this node.")
}

func TestEmptyStates(t *testing.T) {
	g := startGateway(t, gatewayOptions{noRoutes: true})
	a := g.get("/console/", true)
	if a.status != http.StatusOK {
		t.Fatalf("overview: HTTP %d", a.status)
	}
	mustContain(t, "overview without routes", a.body, "No routes yet.", "route erp {")
	mustNotContain(t, "overview without routes", a.body, `class="card"`)
	a = g.get("/console/deliveries", true)
	mustContain(t, "no deliveries", a.body, "No deliveries match. Events appear here once an application sends one that matches a route.")
	mustNotContain(t, "no deliveries", a.body, "Next page", "First page")
}

func TestNoAuthWarnsOnceAndShowsBanner(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	for i := 0; i < 3; i++ {
		a := g.get("/open/", false)
		if a.status != http.StatusOK {
			t.Fatalf("open console: HTTP %d", a.status)
		}
		mustContain(t, "open console", a.body, "No authenticated user.", "open to anyone")
	}
	if n := len(g.logLines("webhook console served a request with no authenticated user")); n != 1 {
		t.Fatalf("%d warnings about the missing auth, want exactly 1", n)
	}
	// The protected console never warns.
	g.get("/console/", true)
	for _, l := range g.logLines("no authenticated user") {
		if l["path"] == "/console/" {
			t.Fatalf("warned about the console behind basic_auth: %v", l)
		}
	}
	if n := len(g.logLines("webhook console mounted")); n < 2 {
		t.Fatalf("%d load-time notes, want one per console", n)
	}
}

func TestDeliveriesListAndFilters(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ids := g.accept(3, nil)
	dead := g.deliveryOf(ids[0], "crm")
	for _, id := range ids {
		g.waitStatus(g.deliveryOf(id, "crm"), persist.StatusDead)
		g.waitStatus(g.deliveryOf(id, "erp"), persist.StatusDelivered)
	}
	a := g.get("/console/deliveries?route=crm&status=dead", true)
	if a.status != http.StatusOK {
		t.Fatalf("HTTP %d\n%s", a.status, a.body)
	}
	mustContain(t, "dead of crm", a.body, dead, `/console/events/`+ids[0]+`#d-`+dead, "Dead deliveries of crm", "http_5xx", `data-live="/console/live?route=crm&amp;status=dead"`)
	mustNotContain(t, "dead of crm", a.body, g.deliveryOf(ids[0], "erp"))
	mustContain(t, "dead of crm", a.body, `action="/console/routes/crm/replay"`)

	all := g.get("/console/deliveries", true)
	mustContain(t, "all deliveries", all.body, dead, g.deliveryOf(ids[2], "erp"))

	// A small page size is not configurable; with 6 deliveries there is
	// one page and no pager link.
	mustNotContain(t, "one page", all.body, "Next page")

	for _, c := range []struct {
		q, want string
	}{
		{"status=lost", `Status &#34;lost&#34;: expected pending, delivered or dead.`},
		{"route=no%20such", `is not a route name`},
		{"route=crm&status=dead&cursor=bogus", "The page link is not valid"},
	} {
		a := g.get("/console/deliveries?"+c.q, true)
		if a.status != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d, want 400", c.q, a.status)
		}
		mustContain(t, c.q, a.body, c.want)
	}
	// A route the gateway does not know is a 404, as in the admin API,
	// not an empty list under a filter that reads "all routes".
	if a := g.get("/console/deliveries?route=nothing", true); a.status != http.StatusNotFound || !strings.Contains(a.body, "There is no route &#34;nothing&#34;") {
		t.Errorf("unknown route: HTTP %d, want 404 saying so\n%s", a.status, a.body)
	}
}

func TestIDSearch(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ids := g.accept(1, nil)
	did := g.deliveryOf(ids[0], "erp")
	for _, c := range []struct{ q, loc string }{
		{ids[0], "/console/events/" + ids[0]},
		{did, "/console/events/" + ids[0] + "#d-" + did},
		{" " + did + " ", "/console/events/" + ids[0] + "#d-" + did},
	} {
		a := g.get("/console/deliveries?id="+url.QueryEscape(c.q), true)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != c.loc {
			t.Errorf("id %q: HTTP %d to %q, want 303 to %q", c.q, a.status, a.header.Get("Location"), c.loc)
		}
	}
	for _, q := range []string{"evt_unknown", "<script>x</script>", strings.Repeat("x", 300)} {
		a := g.get("/console/deliveries?id="+url.QueryEscape(q), true)
		if a.status != http.StatusNotFound || !strings.Contains(a.body, "No event or delivery has the id") {
			t.Errorf("id %q: HTTP %d, want 404 with an explanation", q, a.status)
		}
		mustNotContain(t, "id search", a.body, "<script>x")
	}
	if a := g.get("/console/deliveries/"+did, true); a.status != http.StatusSeeOther || a.header.Get("Location") != "/console/events/"+ids[0]+"#d-"+did {
		t.Errorf("delivery link: HTTP %d to %q", a.status, a.header.Get("Location"))
	}
	if a := g.get("/console/deliveries/dlv_nope", true); a.status != http.StatusNotFound {
		t.Errorf("unknown delivery: HTTP %d, want 404", a.status)
	}
}

func TestEventPage(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled, Remote: true,
	}))
	ids := g.accept(1, ctx)
	crm := g.deliveryOf(ids[0], "crm")
	g.waitStatus(crm, persist.StatusDead)
	g.waitStatus(g.deliveryOf(ids[0], "erp"), persist.StatusDelivered)

	a := g.get("/console/events/"+ids[0], true)
	if a.status != http.StatusOK {
		t.Fatalf("event page: HTTP %d\n%s", a.status, a.body)
	}
	mustContain(t, "event page", a.body,
		"<title>Event "+ids[0]+" · hookgate console</title>",
		"task.created", `id="d-`+crm+`"`,
		"Envelope as stored", `&#34;task&#34;: 0`, // the data, pretty, escaped
		"&lt;b&gt;bold&lt;/b&gt;",             // never markup
		"http_5xx", "500", "database is down", // the attempt and its response
		`https://jaeger.example/trace/4bf92f3577b34da6a3ce929d0e0e4736`,
		`/console/deliveries/`+crm+`/retry`,
		`data-live="/console/live?event=`+ids[0]+`"`,
		"X-Request-Source",
	)
	mustNotContain(t, "event page", a.body, "s3cret", urlToken, "<b>bold</b>")

	if a := g.get("/console/events/evt_nope", true); a.status != http.StatusNotFound || !strings.Contains(a.body, "No such event") {
		t.Errorf("unknown event: HTTP %d", a.status)
	}
}

func TestEventPageCapsTheEnvelope(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	big := `{"blob":"` + strings.Repeat("é", 60<<10) + `"}`
	res, err := g.eng.Accept(context.Background(), []*persist.Event{{Type: "task.big", Data: []byte(big)}})
	if err != nil {
		t.Fatal(err)
	}
	a := g.get("/console/events/"+res[0].ID, true)
	if a.status != http.StatusOK {
		t.Fatalf("HTTP %d", a.status)
	}
	mustContain(t, "big event", a.body, "are not shown")
	if len(a.body) > 100<<10 {
		t.Fatalf("page of %d bytes for a 120 KiB event: the envelope is not capped", len(a.body))
	}
}

func TestActions(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ids := g.accept(2, nil)
	crm := g.deliveryOf(ids[0], "crm")
	g.waitStatus(crm, persist.StatusDead)
	g.waitStatus(g.deliveryOf(ids[1], "crm"), persist.StatusDead)
	erp := g.deliveryOf(ids[0], "erp")
	g.waitStatus(erp, persist.StatusDelivered)
	page := "/console/events/" + ids[0]
	tok := g.csrf(page)
	form := url.Values{"csrf": {tok}, "return": {page}}

	// Retry the delivered one: it is sent again.
	before := g.okHits.Load()
	a := g.post("/console/deliveries/"+erp+"/retry", form, nil)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != page+"?notice=retried&subject="+erp+"&was=delivered" {
		t.Fatalf("retry: HTTP %d to %q\n%s", a.status, a.header.Get("Location"), a.body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for g.okHits.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the retried delivery was not sent again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	shown := g.get(a.header.Get("Location"), true)
	mustContain(t, "after retry", shown.body, "Delivery "+erp+" is queued to be sent now (it was delivered).")
	lines := g.logLines("console: delivery retried")
	if len(lines) != 1 || lines[0]["user"] != testUser || lines[0]["delivery"] != erp {
		t.Fatalf("retry log lines %v, want one naming alice and %s", lines, erp)
	}

	// Pause and resume.
	a = g.post("/console/routes/erp/pause", url.Values{"csrf": {tok}, "return": {"/console/"}}, nil)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/console/?notice=paused&subject=erp" {
		t.Fatalf("pause: HTTP %d to %q", a.status, a.header.Get("Location"))
	}
	if st := routeState(g, "erp"); st != "paused" {
		t.Fatalf("erp is %s after pause", st)
	}
	mustContain(t, "overview after pause", g.get("/console/?notice=paused&subject=erp", true).body,
		"Route erp is paused", "/console/routes/erp/resume", `<p class="reason">paused: paused by an operator`)
	// "Send now" on the paused route queues it, and says it waits.
	a = g.post("/console/deliveries/"+erp+"/retry", form, nil)
	if a.status != http.StatusSeeOther || !strings.Contains(a.header.Get("Location"), "held=paused") {
		t.Fatalf("retry on a paused route: HTTP %d to %q", a.status, a.header.Get("Location"))
	}
	mustContain(t, "retry on a paused route", g.get(a.header.Get("Location"), true).body,
		"but its route sends nothing now (paused): it waits for the route.")
	if a := g.post("/console/routes/erp/resume", form, nil); a.status != http.StatusSeeOther {
		t.Fatalf("resume: HTTP %d", a.status)
	}
	if st := routeState(g, "erp"); st != "active" {
		t.Fatalf("erp is %s after resume", st)
	}
	if n := len(g.logLines("console: route paused")); n != 1 {
		t.Fatalf("%d pause log lines, want 1", n)
	}

	// Replay crm's dead deliveries of the last day: both.
	a = g.post("/console/routes/crm/replay", url.Values{"csrf": {tok}, "since": {"24h"}, "status": {"dead"}, "return": {"/console/"}}, nil)
	if a.status != http.StatusSeeOther || !strings.Contains(a.header.Get("Location"), "notice=replayed") || !strings.Contains(a.header.Get("Location"), "n=2") {
		t.Fatalf("replay: HTTP %d to %q\n%s", a.status, a.header.Get("Location"), a.body)
	}
	mustContain(t, "after replay", g.get(a.header.Get("Location"), true).body, "Requeued 2 dead deliveries of route crm.")

	// A crafted notice says nothing.
	mustNotContain(t, "crafted notice", g.get("/console/?notice=paused&subject=Your+session+expired,+log+in+at+evil.example", true).body, `id="notice"`)

	// A return path off the console goes to the overview instead.
	for _, ret := range []string{"https://evil.example/", "//evil.example/x", "/elsewhere", `/console\@evil`} {
		a := g.post("/console/routes/erp/resume", url.Values{"csrf": {tok}, "return": {ret}}, nil)
		if loc := a.header.Get("Location"); !strings.HasPrefix(loc, "/console/?") {
			t.Errorf("return %q: sent to %q, want the overview", ret, loc)
		}
	}
}

// A route whose circuit is open has a "Probe now" button: it resumes
// the route, which ends the cool-down, and the probe goes out at once
// (here it fails again: the endpoint refuses connections).
func TestConsoleProbeNow(t *testing.T) {
	g := startGateway(t, gatewayOptions{extraRoutes: `
		route down {
			topics probe.*
			url http://127.0.0.1:9/never
			breaker 1 {
				cooldown 1h
			}
		}
`})
	if _, err := g.eng.Accept(context.Background(), []*persist.Event{{Type: "probe.x", Data: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	circuit := func() string {
		for _, st := range g.eng.Stats() {
			if st.Route == "down" {
				return st.Circuit
			}
		}
		return "missing"
	}
	deadline := time.Now().Add(10 * time.Second)
	for circuit() != "open" {
		if time.Now().After(deadline) {
			t.Fatalf("the circuit did not open: %s", circuit())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Due now, held by the circuit: the probe once the cool-down ends
	// (the first event waits for its retry's backoff).
	if _, err := g.eng.Accept(context.Background(), []*persist.Event{{Type: "probe.x", Data: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	page := g.get("/console/", true)
	mustContain(t, "overview with the circuit open", page.body, "/console/routes/down/resume", ">Probe now</button>")
	a := g.post("/console/routes/down/resume", url.Values{"csrf": {g.csrf("/console/")}, "return": {"/console/"}}, nil)
	if a.status != http.StatusSeeOther {
		t.Fatalf("probe now: HTTP %d\n%s", a.status, a.body)
	}
	mustContain(t, "after probe now", g.get(a.header.Get("Location"), true).body, "the next pending delivery goes out as the probe now")
	deadline = time.Now().Add(10 * time.Second)
	for len(g.logLines("circuit probe failed; circuit stays open")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no probe went out within 10 s of probe now (cool-down 1h); log: %v", g.logLines("circuit cool-down ended by an operator"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(g.logLines("circuit cool-down ended by an operator")); n != 1 {
		t.Errorf("%d log lines for the operator ending the cool-down, want 1", n)
	}
}

func routeState(g *gateway, route string) string {
	for _, st := range g.eng.Stats() {
		if st.Route == route {
			return st.State
		}
	}
	return "missing"
}

func TestActionsRefused(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ids := g.accept(1, nil)
	erp := g.deliveryOf(ids[0], "erp")
	g.waitStatus(erp, persist.StatusDelivered)
	tok := g.csrf("/console/")
	retry := "/console/deliveries/" + erp + "/retry"
	for _, c := range []struct {
		name   string
		path   string
		form   url.Values
		hdr    map[string]string
		status int
		want   string
	}{
		{"no token", retry, url.Values{}, nil, 403, "form token is missing or out of date"},
		{"wrong token", retry, url.Values{"csrf": {tok + "x"}}, nil, 403, "form token"},
		{"cross-origin", retry, url.Values{"csrf": {tok}}, map[string]string{"Origin": "https://evil.example"}, 403, "did not come from a page of this console"},
		{"null origin", retry, url.Values{"csrf": {tok}}, map[string]string{"Origin": "null"}, 403, "did not come from"},
		{"cross-site fetch", retry, url.Values{"csrf": {tok}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "Sec-Fetch-Site is cross-site"},
		{"no origin at all", retry, url.Values{"csrf": {tok}}, map[string]string{"Origin": ""}, 403, "no Origin or Referer"},
		{"foreign referer", retry, url.Values{"csrf": {tok}}, map[string]string{"Origin": "", "Referer": "https://evil.example/console/"}, 403, "Referer is not on"},
		{"unknown delivery", "/console/deliveries/dlv_nope/retry", url.Values{"csrf": {tok}}, nil, 404, "No such delivery"},
		{"unknown route", "/console/routes/nope/pause", url.Values{"csrf": {tok}}, nil, 404, "No such route"},
		{"bad since", "/console/routes/crm/replay", url.Values{"csrf": {tok}, "since": {"yesterday"}}, nil, 400, "expected an RFC 3339 time"},
		{"replay pending", "/console/routes/crm/replay", url.Values{"csrf": {tok}, "status": {"pending"}}, nil, 400, "expected dead or delivered"},
		{"action on a page", "/console/events/" + ids[0], url.Values{"csrf": {tok}}, nil, 405, "takes GET requests"},
	} {
		a := g.post(c.path, c.form, c.hdr)
		if a.status != c.status || !strings.Contains(a.body, c.want) {
			t.Errorf("%s: HTTP %d, want %d with %q\n%s", c.name, a.status, c.status, c.want, clip(a.body))
		}
	}
	// Same origin by Referer alone, or by Sec-Fetch-Site, is accepted.
	if a := g.post(retry, url.Values{"csrf": {tok}}, map[string]string{"Origin": "", "Referer": g.origin + "/console/"}); a.status != http.StatusSeeOther {
		t.Errorf("same-origin Referer: HTTP %d", a.status)
	}
	if a := g.post(retry, url.Values{"csrf": {tok}}, map[string]string{"Origin": "", "Sec-Fetch-Site": "same-origin"}); a.status != http.StatusSeeOther {
		t.Errorf("Sec-Fetch-Site same-origin: HTTP %d", a.status)
	}
	// The open console's token (no user) is not alice's.
	openTok := csrfField.FindStringSubmatch(g.get("/open/", false).body)[1]
	if openTok == tok {
		t.Fatal("the same CSRF token for alice and for nobody")
	}
	if a := g.get(retry, true); a.status != http.StatusMethodNotAllowed || a.header.Get("Allow") != "POST" {
		t.Errorf("GET on retry: HTTP %d Allow %q, want 405 POST", a.status, a.header.Get("Allow"))
	}
	if n := len(g.logLines("refused a cross-origin action")); n != 5 {
		t.Errorf("%d cross-origin refusals logged, want 5", n)
	}
	if n := len(g.logLines("refused an action with a missing or stale form token")); n != 2 {
		t.Errorf("%d token refusals logged, want 2", n)
	}
	if l := g.logLines("console: delivery retried"); len(l) == 0 || l[0]["logger"] != "http.handlers.webhook_console" {
		t.Errorf("action log lines %v, want them from the logger http.handlers.webhook_console", l)
	}
}

func TestLiveStream(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.origin+"/console/live?route=crm", nil)
	req.Header.Set("Authorization", basicAuth())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("live: HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	// The stream opens before anything happens.
	for sc.Scan() && sc.Text() != ": live" {
	}
	ids := g.accept(1, nil)
	var o module.Outcome
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			if err := json.Unmarshal([]byte(data), &o); err != nil {
				t.Fatalf("outcome %q: %v", data, err)
			}
			break
		}
	}
	if o.Route != "crm" || o.EventID != ids[0] || o.Status != "dead" || o.HTTPStatus != 500 {
		t.Fatalf("live outcome %+v, want crm's dead attempt at %s (erp's is filtered out)", o, ids[0])
	}
	mustNotContain(t, "live outcome", o.Error, urlToken)

	if a := g.get("/console/live?status=lost", true); a.status != http.StatusBadRequest {
		t.Errorf("bad live filter: HTTP %d, want 400", a.status)
	}
}

// A reload ends open live streams at once: the old server waits for its
// requests before it lets go, and a stream would otherwise hold it for
// minutes.
func TestReloadEndsLiveStreams(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	req, _ := http.NewRequest(http.MethodGet, g.origin+"/console/live", nil)
	req.Header.Set("Authorization", basicAuth())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		ended <- err
	}()
	start := time.Now()
	loaded := make(chan error, 1)
	go func() { loaded <- g.reload() }()
	select {
	case err := <-loaded:
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the reload waits on the open live stream")
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the live stream is still open after the reload")
	}
	t.Logf("reload with an open live stream took %v", time.Since(start).Round(time.Millisecond))
}

// The deliveries page filters by event type and time window, keeps them
// in the form and the page links, and refuses a bad window.
func TestDeliveriesTypeAndTimeFilters(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ids := g.accept(2, nil)
	for _, id := range ids {
		g.waitStatus(g.deliveryOf(id, "crm"), persist.StatusDead)
	}
	dead := g.deliveryOf(ids[0], "crm")

	a := g.get("/console/deliveries?status=dead&type=task.created&since=1h", true)
	if a.status != http.StatusOK {
		t.Fatalf("HTTP %d\n%s", a.status, a.body)
	}
	mustContain(t, "dead task.created since 1h", a.body, dead, "task.created",
		`name="type" value="task.created"`, `name="since" value="1h"`)
	mustNotContain(t, "filters that exist", a.body, "there is no filter by event type or time")

	for q, what := range map[string]string{
		"status=dead&type=task.deleted": "another type",
		"status=dead&until=1h":          "died before an hour ago",
		"since=" + url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339)): "created after an hour from now",
	} {
		a := g.get("/console/deliveries?"+q, true)
		if a.status != http.StatusOK {
			t.Fatalf("%s: HTTP %d", q, a.status)
		}
		mustContain(t, what, a.body, "No deliveries match.")
		mustNotContain(t, what, a.body, dead)
	}

	// A later page keeps the filters in its links.
	f := persist.ListFilter{Status: persist.StatusDead, Type: "task.created", Limit: 1}
	_, next, err := g.eng.Deliveries(f)
	if err != nil || next == "" {
		t.Fatalf("a first page of one: next %q, %v", next, err)
	}
	a = g.get("/console/deliveries?status=dead&type=task.created&cursor="+url.QueryEscape(next), true)
	mustContain(t, "second page", a.body, `href="/console/deliveries?status=dead&amp;type=task.created"`)

	for q, want := range map[string]string{
		"since=yesterday":   "Since &#34;yesterday&#34;: expected an RFC 3339 time",
		"until=-1h":         "Until &#34;-1h&#34;",
		"since=1h&until=2h": "The time window ends before it starts",
	} {
		a := g.get("/console/deliveries?"+q, true)
		if a.status != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d, want 400", q, a.status)
		}
		mustContain(t, q, a.body, want)
	}
}
