package module

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

var cliT0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func TestWriteStats(t *testing.T) {
	var b bytes.Buffer
	err := writeStats(&b, []RouteStats{
		{Route: "erp", State: "active", Circuit: "closed", Pending: 12, InFlight: 3, Delivered: 1024, Dead: 2, LastSuccess: cliT0},
		{Route: "slack-alerts", State: "paused", Circuit: "open", LastFailure: cliT0.Add(time.Minute), Reason: "paused by an operator"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ROUTE         STATE   CIRCUIT  PENDING  IN FLIGHT  DELIVERED  DEAD  LAST SUCCESS          LAST FAILURE\n" +
		"erp           active  closed   12       3          1024       2     2026-11-23T10:00:00Z  -\n" +
		"slack-alerts  paused  open     0        0          0          0     -                     2026-11-23T10:01:00Z\n" +
		"slack-alerts paused: paused by an operator\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	writeStats(&b, nil)
	if b.String() != "no routes\n" {
		t.Errorf("empty: %q", b.String())
	}
}

func TestWriteEvent(t *testing.T) {
	ans := &eventAnswer{
		Event: EventView{ID: "evt_1", Type: "task.finished", Source: "api", Time: cliT0, Received: cliT0,
			Data:    json.RawMessage(`{ "task": "T-1" }`),
			Headers: map[string]string{"x-b": "2", "x-a": "1"}, Routes: []string{"erp", "slack"}, TraceID: "4bf9"},
		Deliveries: []DeliveryView{
			{ID: "dlv_1", Route: "erp", Status: "dead", Attempts: 2, Done: cliT0.Add(time.Minute), History: []AttemptView{
				{N: 1, Time: cliT0, DurationMS: 12.4, Status: 503, Class: "http_5xx", Error: "endpoint answered 503", Response: "busy\nnow"},
				{N: 2, Time: cliT0.Add(time.Minute), DurationMS: 1500, Class: "connect", Error: "Post https://erp.example/…: " + strings.Repeat("x", 120), TraceID: "abc",
					Response: "//4=", ResponseEncoding: "base64"},
			}},
			{ID: "dlv_2", Route: "slack", Status: "pending", Due: cliT0.Add(time.Hour)},
		},
	}
	var b bytes.Buffer
	if err := writeEvent(&b, ans); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Event     evt_1\n",
		"Routes    erp, slack\n",
		"Trace     4bf9\n",
		"Headers   x-a: 1\n          x-b: 2\n",
		`Data      {"task":"T-1"}` + "\n",
		"Delivery dlv_1 to erp: dead at 2026-11-23T10:01:00Z after 2 attempts\n",
		"  #  TIME                  DURATION  STATUS  CLASS     ERROR",
		"  1  2026-11-23T10:00:00Z  12ms      503     http_5xx  endpoint answered 503",
		"busy now\n",
		// Without the client's "Post URL: ", clipped to 100.
		"  2  2026-11-23T10:01:00Z  1.5s      -       connect   " + strings.Repeat("x", 99) + "…",
		"(base64) //4=\n",
		"Delivery dlv_2 to slack: pending, next attempt due 2026-11-23T11:00:00Z after 0 attempts\n  no attempts yet\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// Big data is cut; no deliveries is said.
	ans = &eventAnswer{Event: EventView{ID: "e", Data: json.RawMessage(`"` + strings.Repeat("d", 5000) + `"`)}}
	b.Reset()
	writeEvent(&b, ans)
	if out := b.String(); !strings.Contains(out, "… (5002 bytes; --json shows all)") || !strings.Contains(out, "No deliveries") || len(out) > 3000 {
		t.Errorf("big event:\n%.300s", out)
	}
}

func TestWriteDeliveries(t *testing.T) {
	var b bytes.Buffer
	err := writeDeliveries(&b, &listAnswer{Deliveries: []DeliveryView{
		{ID: "dlv_1", EventID: "e1", Route: "erp", Status: "dead", Attempts: 3, Done: cliT0, LastStatus: 400, LastClass: "http_4xx", LastError: "endpoint answered 400"},
		{ID: "dlv_2", EventID: "e2", Route: "erp", Status: "pending", Attempts: 1, Due: cliT0, LastClass: "timeout"},
		{ID: "dlv_3", EventID: "e3", Route: "erp", Status: "pending", Due: cliT0},
	}, Next: "AQE"})
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"DELIVERY  EVENT  ROUTE  STATUS   ATTEMPTS  DUE/DONE              LAST          ERROR\n" +
		"dlv_1     e1     erp    dead     3         2026-11-23T10:00:00Z  400 http_4xx  endpoint answered 400\n" +
		"dlv_2     e2     erp    pending  1         2026-11-23T10:00:00Z  timeout       -\n" +
		"dlv_3     e3     erp    pending  0         2026-11-23T10:00:00Z  -             -\n" +
		"more: --cursor AQE\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	writeDeliveries(&b, &listAnswer{})
	if b.String() != "no deliveries\n" {
		t.Errorf("empty: %q", b.String())
	}
}

// terminalSafe shows what a terminal would act on as escapes, and keeps
// text, newlines, tabs and CRLF as they are.
func TestTerminalSafe(t *testing.T) {
	for in, want := range map[string]string{
		"plain café\ttab\r\nnext\n": "plain café\ttab\r\nnext\n",
		"\x1b[31mred\x07":           `\x1b[31mred\x07`,
		"a\rb":                      `a\x0db`,
		"\u202etxt.exe\u0085":       `\u202etxt.exe\x85`,
		"\x7f":                      `\x7f`,
	} {
		var b bytes.Buffer
		n, err := terminalSafe{&b}.Write([]byte(in))
		if err != nil || n != len(in) || b.String() != want {
			t.Errorf("%q: wrote %q (%d, %v), want %q", in, b.String(), n, err, want)
		}
	}
}

func TestAdminError(t *testing.T) {
	cases := []struct{ in, want string }{
		{`caddy responded with error: HTTP 404: {"error":"not_found","message":"no event \"x\""}` + "\n",
			`no event "x" (HTTP 404, not_found)`},
		{`caddy responded with error: HTTP 400: {"error":"invalid request"}`, "HTTP 400: invalid request"},
		{`caddy responded with error: HTTP 502: <html>bad gateway</html>`, `caddy responded with error: HTTP 502: <html>bad gateway</html>`},
		{`performing request: dial tcp 127.0.0.1:1: connect: connection refused`,
			`performing request: dial tcp 127.0.0.1:1: connect: connection refused (is Caddy running with its admin API at 127.0.0.1:1? see --address)`},
	}
	for _, c := range cases {
		if got := adminError("127.0.0.1:1", errors.New(c.in)).Error(); got != c.want {
			t.Errorf("adminError(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

// TestWebhooksCommand runs the subcommands against a stand-in admin API
// and checks the requests they make and what they print.
func TestWebhooksCommand(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/webhooks/events/foreign" {
			w.Header().Set(apiHeader, Version)
		}
		switch {
		case r.URL.Path == "/webhooks/stats":
			w.Write([]byte(`{"routes":[{"route":"erp","state":"active","circuit":"closed","pending":4,"in_flight":1,"delivered":9,"dead":0}]}`))
		case r.URL.Path == "/webhooks/deliveries":
			w.Write([]byte(`{"deliveries":[],"next":"CUR"}`))
		case strings.HasSuffix(r.URL.Path, "/retry"):
			w.Write([]byte(`{"delivery":"dlv_1","route":"erp","was":"dead"}`))
		case strings.HasSuffix(r.URL.Path, "/replay"):
			w.Write([]byte(`{"route":"erp","replayed":7}`))
		case r.URL.Path == "/webhooks/events/foreign":
			w.Write([]byte(`{"received":true}`))
		case r.URL.Path == "/webhooks/routes/evil/pause":
			// What an answer quotes may come from a hostile endpoint.
			w.Write([]byte(`{"route":"e\u001b]0;PWNED\u0007\u001b[2J\r\u202evil","paused":true}`))
		case strings.HasSuffix(r.URL.Path, "/pause"):
			w.Write([]byte(`{"route":"erp","paused":true}`))
		case strings.HasSuffix(r.URL.Path, "/resume"):
			w.Write([]byte(`{"route":"erp","paused":false}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"not_found","message":"no event \"nope\""}`))
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	run := func(args ...string) (string, error) {
		root := &cobra.Command{Use: "webhooks"}
		buildWebhooksCommand(root)
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		if !slices.Contains(args, "--address") {
			args = append(args, "--address", addr)
		}
		root.SetArgs(args)
		err := root.Execute()
		return out.String(), err
	}
	cases := []struct {
		args    []string
		request string
		output  string
	}{
		{[]string{"stats"}, "GET /webhooks/stats", "erp    active  closed   4        1          9"},
		{[]string{"stats", "--json"}, "GET /webhooks/stats", `{"routes":[{"route":"erp"`},
		{[]string{"deliveries", "--route", "erp", "--status", "dead", "--limit", "5", "--cursor", "C1"},
			"GET /webhooks/deliveries?cursor=C1&limit=5&route=erp&status=dead", "no deliveries\nmore: --cursor CUR\n"},
		{[]string{"deliveries"}, "GET /webhooks/deliveries", "no deliveries"},
		{[]string{"deliveries", "--type", "order.paid", "--since", "24h", "--until", "2026-11-23T10:00:00Z"},
			"GET /webhooks/deliveries?since=24h&type=order.paid&until=2026-11-23T10%3A00%3A00Z", "no deliveries"},
		{[]string{"retry", "dlv_1"}, "POST /webhooks/deliveries/dlv_1/retry", "delivery dlv_1 (route erp) requeued; it was dead\n"},
		{[]string{"replay", "erp", "--since", "2d", "--limit", "10"}, "POST /webhooks/routes/erp/replay?limit=10&since=2d&status=dead",
			"7 deliveries of route erp requeued\n"},
		{[]string{"replay", "erp", "--status", "delivered", "--until", "2026-11-23T10:00:00Z"},
			"POST /webhooks/routes/erp/replay?status=delivered&until=2026-11-23T10%3A00%3A00Z", "7 deliveries"},
		{[]string{"pause", "erp"}, "POST /webhooks/routes/erp/pause", "route erp paused\n"},
		{[]string{"pause", "evil"}, "POST /webhooks/routes/evil/pause", `route e\x1b]0;PWNED\x07\x1b[2J\x0d\u202evil paused` + "\n"},
		{[]string{"resume", "erp"}, "POST /webhooks/routes/erp/resume", "route erp resumed\n"},
	}
	for _, c := range cases {
		out, err := run(c.args...)
		if err != nil {
			t.Errorf("%v: %v\n%s", c.args, err, out)
			continue
		}
		mu.Lock()
		last := seen[len(seen)-1]
		mu.Unlock()
		if last != c.request {
			t.Errorf("%v: request %q, want %q", c.args, last, c.request)
		}
		if !strings.Contains(out, c.output) {
			t.Errorf("%v: output\n%s\nlacks %q", c.args, out, c.output)
		}
	}
	if _, err := run("events", "nope"); err == nil || err.Error() != `no event "nope" (HTTP 404, not_found)` {
		t.Errorf("events nope: %v", err)
	}
	for _, args := range [][]string{{"events"}, {"retry"}, {"replay"}, {"pause", "a", "b"}, {"stats", "x"}} {
		if _, err := run(args...); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
	// --address as a URL (copied from a browser) works; an explicit
	// --limit 0 goes to the API, which refuses it, not the default.
	if _, err := run("stats", "--address", "http://"+addr+"/"); err != nil {
		t.Errorf("--address http://…/: %v", err)
	}
	if _, err := run("deliveries", "--limit", "0"); err != nil {
		t.Errorf("deliveries --limit 0: %v", err)
	}
	mu.Lock()
	last := seen[len(seen)-1]
	mu.Unlock()
	if last != "GET /webhooks/deliveries?limit=0" {
		t.Errorf("deliveries --limit 0 asked %q", last)
	}
	// A server that is not hookgate's admin API answering 2xx is not
	// taken for it.
	if out, err := run("events", "foreign"); err == nil || !strings.Contains(err.Error(), "not as hookgate's admin API") {
		t.Errorf("a foreign server's 200: %v\n%s", err, out)
	}
	// Under caddy, as it runs: a misspelt subcommand fails (exit 1)
	// instead of printing the help.
	caddyRoot := &cobra.Command{Use: "caddy", SilenceErrors: true}
	webhooks := &cobra.Command{Use: "webhooks"}
	buildWebhooksCommand(webhooks)
	caddyRoot.AddCommand(webhooks)
	caddyRoot.SetOut(io.Discard)
	caddyRoot.SetArgs([]string{"webhooks", "stat"})
	if err := caddyRoot.Execute(); err == nil || !strings.Contains(err.Error(), `unknown command "stat" for "caddy webhooks"`) {
		t.Errorf("caddy webhooks stat: %v, want an unknown command error", err)
	}
	caddyRoot.SetArgs([]string{"webhooks"})
	if err := caddyRoot.Execute(); err != nil {
		t.Errorf("caddy webhooks (help): %v", err)
	}
}

// An admin address that accepts connections and never answers fails the
// command after adminAnswerWait instead of hanging it.
func TestCLIAdminAnswerWait(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never answered
		}
	}()
	old := adminAnswerWait
	adminAnswerWait = 200 * time.Millisecond
	t.Cleanup(func() { adminAnswerWait = old })
	root := &cobra.Command{Use: "webhooks", SilenceErrors: true}
	buildWebhooksCommand(root)
	root.SetOut(io.Discard)
	root.SetArgs([]string{"stats", "--address", ln.Addr().String()})
	done := make(chan error, 1)
	go func() { done <- root.Execute() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no answer from the admin API") {
			t.Errorf("stats against a silent server: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stats against a silent server did not return")
	}
}
