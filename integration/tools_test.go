package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

const toolsSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// webhooksCLI runs `caddy webhooks ARGS --address ADMIN` as a child
// process and returns its output.
func (g *gateway) webhooksCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(append(append([]string{"webhooks"}, args...), "--address", g.admin), "\x1f"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// adminPostJSON makes a POST with a JSON body to the admin API.
func (g *gateway) adminPostJSON(path, body string) (int, map[string]any) {
	g.t.Helper()
	resp, err := client.Post("http://"+g.admin+path, "application/json", strings.NewReader(body))
	if err != nil {
		g.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var ans map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		g.t.Fatalf("POST %s: %v", path, err)
	}
	return resp.StatusCode, ans
}

func TestToolsSend(t *testing.T) {
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Sink", "yes")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"received":true}`))
	})
	hang, _ := hangingSink(t)
	g := startGateway(t, operateConfig(`
		route erp {
			topics task.finished
			url `+s.URL+`/erp
			sign `+toolsSecret+`
			sample_event task.finished `+"`"+`{"task_id": "T-1"}`+"`"+`
		}
		route stuck {
			topics *
			url `+hang+`
			timeout 300ms
		}`))

	code, ans := g.adminPostJSON("/webhooks/routes/erp/send", "")
	if code != 200 || num(ans["status"]) != 201 || ans["body"] != `{"received":true}` || ans["class"] != nil ||
		!strings.HasPrefix(ans["event"].(string), "test_") || ans["type"] != "task.finished" {
		t.Fatalf("send: %d %v", code, ans)
	}
	if h, _ := ans["headers"].(map[string]any); h == nil || h["X-Sink"] == nil {
		t.Errorf("response headers: %v", ans["headers"])
	}
	req := s.waitFor(t, 1, 5*time.Second)[0]
	wh, _ := standardwebhooks.NewWebhook(toolsSecret)
	if err := wh.Verify(req.Body, req.Header); err != nil {
		t.Errorf("the test request's signature: %v", err)
	}
	if req.Header.Get("Webhook-Test") != "true" || req.Header.Get("Webhook-Id") != ans["event"] || !strings.Contains(string(req.Body), `"task_id":"T-1"`) {
		t.Errorf("test request: %v %s", req.Header, req.Body)
	}

	// The CLI shows the answer; --type and --data replace the sample.
	out, err := g.webhooksCLI(t, "send", "erp", "--type", "task.finished", "--data", `{"task_id":"T-9"}`)
	if err != nil || !strings.Contains(out, "route erp: 201 Created") || !strings.Contains(out, "X-Sink: yes") || !strings.Contains(out, `{"received":true}`) {
		t.Errorf("caddy webhooks send: %v\n%s", err, out)
	}
	if got := s.waitFor(t, 2, 5*time.Second); !strings.Contains(string(got[1].Body), `"task_id":"T-9"`) {
		t.Errorf("CLI test request body %s", got[1].Body)
	}
	// Nothing stored or counted.
	if st := g.routeStat("erp"); num(st["delivered"]) != 0 || num(st["pending"]) != 0 {
		t.Errorf("stats after test sends: %v", st)
	}

	// An endpoint that hangs: the route's timeout, class timeout.
	start := time.Now()
	code, ans = g.adminPostJSON("/webhooks/routes/stuck/send", "")
	if code != 200 || ans["class"] != "timeout" || time.Since(start) > 5*time.Second {
		t.Errorf("hanging endpoint: %d %v after %v", code, ans, time.Since(start))
	}
	if st := g.routeStat("stuck"); st["circuit"] != "closed" || st["last_failure"] != nil {
		t.Errorf("a test send touched the route: %v", st)
	}
	// A failed test exits non-zero, after printing the answer.
	if out, err := g.webhooksCLI(t, "send", "stuck"); err == nil || !strings.Contains(out, "failed: timeout") ||
		!strings.Contains(out, "the test delivery through route stuck failed: timeout") {
		t.Errorf("CLI send that timed out: %v\n%s; want the answer and an error", err, out)
	}
	// A type ingest would refuse is refused here too.
	if code, ans := g.adminPostJSON("/webhooks/routes/erp/send", `{"type":"bad type!"}`); code != 400 || ans["error"] != "bad_request" {
		t.Errorf("send with an invalid type: %d %v, want 400 bad_request", code, ans)
	}
	// Unknown route; with --json the API's error goes to standard output.
	wantAdminError(t, g.adminCall("POST", "/webhooks/routes/nope/send"), 404, "unknown_route")
	if out, err := g.webhooksCLI(t, "send", "nope"); err == nil || !strings.Contains(out, "no route") {
		t.Errorf("CLI send to an unknown route: %v\n%s", err, out)
	}
	if out, err := g.webhooksCLI(t, "send", "nope", "--json"); err == nil || !strings.Contains(out, `"unknown_route"`) || !strings.HasPrefix(strings.TrimSpace(out), "{") {
		t.Errorf("CLI send --json to an unknown route: %v\n%s; want the API's JSON error", err, out)
	}
}

func TestToolsBackfill(t *testing.T) {
	old := newSink(t, nil)
	late := newSink(t, nil)
	oldRoute := `
		route old {
			topics task.*
			url ` + old.URL + `
		}`
	g := startGateway(t, operateConfig(oldRoute))
	g.postBatch([]string{
		`{"type":"task.finished","data":{"priority":"High"}}`,
		`{"type":"task.finished","data":{"priority":"Low"}}`,
		`{"type":"task.created","data":{"priority":"High"}}`,
		`{"type":"task.finished","data":{"priority":"High"}}`,
	})
	old.waitFor(t, 4, 10*time.Second)
	// A route added by a reload after the events were stored.
	g.load(operateConfig(oldRoute + `
		route late {
			topics task.finished
			when ` + "`" + `event.data.priority == "High"` + "`" + `
			url ` + late.URL + `
		}`))

	wantAdminError(t, g.adminCall("POST", "/webhooks/routes/late/backfill?since=1h&until=2h"), 400, "bad_request")
	wantAdminError(t, g.adminCall("POST", "/webhooks/routes/late/backfill?since=soon"), 400, "bad_request")
	wantAdminError(t, g.adminCall("POST", "/webhooks/routes/late/backfill"), 400, "bad_request")
	wantAdminError(t, g.adminCall("POST", "/webhooks/routes/nope/backfill?since=1h"), 404, "unknown_route")

	out, err := g.webhooksCLI(t, "backfill", "late", "--since", "1h", "--dry-run")
	if err != nil || !strings.Contains(out, "4 events offered, 2 matched, 2 would be queued (dry run), 0 skipped") {
		t.Errorf("dry run: %v\n%s", err, out)
	}
	out, err = g.webhooksCLI(t, "backfill", "late", "--since", "1h")
	if err != nil || !strings.Contains(out, "4 events offered, 2 matched, 2 queued, 0 skipped") {
		t.Fatalf("backfill: %v\n%s", err, out)
	}
	got := late.waitFor(t, 2, 10*time.Second)
	for _, r := range got {
		if !strings.Contains(string(r.Body), `"priority":"High"`) || !strings.Contains(string(r.Body), `"type":"task.finished"`) {
			t.Errorf("backfilled delivery %s", r.Body)
		}
	}
	ans := g.adminOK("POST", "/webhooks/routes/late/backfill?since=1h")
	if num(ans["queued"]) != 0 || num(ans["skipped"]) != 2 || num(ans["matched"]) != 2 {
		t.Errorf("second backfill: %v", ans)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(late.requests()); n != 2 {
		t.Errorf("the late route got %d requests, want 2", n)
	}
	if n := len(old.requests()); n != 4 {
		t.Errorf("the old route got %d requests, want 4", n)
	}
}

func TestToolsTail(t *testing.T) {
	s := newSink(t, nil)
	g := startGateway(t, operateConfig(`
		route a {
			topics *
			url `+s.URL+`
		}`))
	wantAdminError(t, g.adminCall("GET", "/webhooks/tail?status=nope"), 400, "bad_request")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+g.admin+"/webhooks/tail?route=a", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("tail: %d %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, ":") {
		t.Fatalf("first line %q", line)
	}
	posted := time.Now()
	_, ingest := g.post("/events", `{"type":"task.finished","id":"tail-1","data":{}}`)
	if ingest["id"] != "tail-1" {
		t.Fatalf("ingest %v", ingest)
	}
	lines := make(chan string, 16)
	go func() {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			lines <- strings.TrimRight(line, "\n")
		}
	}()
	var o map[string]any
	for o == nil {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("the stream ended")
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				if err := json.Unmarshal([]byte(data), &o); err != nil {
					t.Fatal(err)
				}
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no outcome on the tail")
		}
	}
	if d := time.Since(posted); d > time.Second {
		t.Errorf("the outcome reached the tail after %v", d)
	}
	if o["event"] != "tail-1" || o["route"] != "a" || o["status"] != "delivered" || num(o["http_status"]) != 200 {
		t.Errorf("outcome %v", o)
	}

	// The CLI: one line per outcome, until it is stopped.
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join([]string{"webhooks", "tail", "--address", g.admin}, "\x1f"))
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	cliLines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			cliLines <- sc.Text()
		}
	}()
	// Two tails now: ours and the CLI's. Post once the CLI's is open.
	eventually(t, 10*time.Second, "the CLI's tail", func() bool {
		_, ans := g.post("/events", `{"type":"task.finished","data":{}}`)
		select {
		case line := <-cliLines:
			if !strings.Contains(line, "  a  ") || !strings.Contains(line, "delivered  200") || !strings.Contains(line, ans["id"].(string)) {
				// An earlier post's line: fine as long as it is one.
				if !strings.Contains(line, "delivered  200") {
					t.Errorf("CLI line %q", line)
				}
			}
			return true
		case <-time.After(500 * time.Millisecond):
			return false
		}
	})

	// The client goes away: its subscription ends (the stream's writer
	// notices at the next write: a heartbeat or an outcome).
	cancel()
	resp.Body.Close()
}
