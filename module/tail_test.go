package module

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestAdminTail(t *testing.T) {
	old := tailHeartbeat
	tailHeartbeat = 50 * time.Millisecond
	t.Cleanup(func() { tailHeartbeat = old })
	sink := newCountingSink(t, func(n int64) int { return 200 })
	te := startTestEngine(t, "", map[string]*Route{"a": {URL: sink.URL}, "b": {URL: sink.URL}}, nil)
	a := adminFor(te.Engine)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.serve(w, r) }))
	defer srv.Close()

	if rec, body := callAdmin(t, a, "GET", "/webhooks/tail?status=gone", nil); rec.Code != 400 || body.Error != "bad_request" {
		t.Errorf("bad status: %d %+v", rec.Code, body)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/webhooks/tail?route=b", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("tail: %d %s", resp.StatusCode, ct)
	}
	waitUntil(t, "the subscription", func() bool { return te.Subscribers() == 1 })
	posted := time.Now()
	id := te.post(`{}`) // to a and b; the tail shows b's
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var o Outcome
	heartbeats := 0
	for o.Route == "" {
		select {
		case line := <-lines:
			if line == ": heartbeat" {
				heartbeats++
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				if err := json.Unmarshal([]byte(data), &o); err != nil {
					t.Fatalf("%s: %v", data, err)
				}
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no outcome on the tail")
		}
	}
	if o.Route != "b" || o.EventID != id || o.Status != "delivered" || o.HTTPStatus != 200 {
		t.Errorf("outcome %+v", o)
	}
	if d := time.Since(posted); d > time.Second {
		t.Errorf("the outcome took %v to reach the tail", d)
	}
	// Heartbeats while idle.
	deadline := time.After(5 * time.Second)
	for heartbeats == 0 {
		select {
		case line := <-lines:
			if line == ": heartbeat" {
				heartbeats++
			}
		case <-deadline:
			t.Fatal("no heartbeat")
		}
	}
	// The client goes: so does the subscription.
	cancel()
	waitUntil(t, "the subscription to end", func() bool { return te.Subscribers() == 0 })

	// Caddy stops (no config uses the engine any more): the stream ends,
	// so that the admin server can stop without waiting for the client.
	resp2, err := http.Get(srv.URL + "/webhooks/tail")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	waitUntil(t, "the second subscription", func() bool { return te.Subscribers() == 1 })
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp2.Body); ended <- err }()
	te.withdraw(nil)
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("the stream ended with %v, want a clean end", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the tail went on after the last config stopped")
	}
}

func TestReadTail(t *testing.T) {
	o := Outcome{Time: cliT0, Route: "erp", DeliveryID: "dlv_1", EventID: "evt_1", EventType: "task.finished", Attempt: 2,
		Status: "retry", HTTPStatus: 503, Class: "http_5xx", Error: "endpoint answered 503", DurationMS: 41, Next: cliT0.Add(time.Minute)}
	b, _ := json.Marshal(o)
	stream := ": hookgate outcomes\n\n: heartbeat\n\nevent: dropped\ndata: {\"dropped\":3}\n\ndata: " + string(b) + "\n\n"
	var out bytes.Buffer
	if err := readTail(strings.NewReader(stream), &out, false); err != nil {
		t.Fatal(err)
	}
	want := "… 3 outcomes dropped so far: this tail fell behind\n" +
		"2026-11-23T10:00:00Z  erp  dlv_1  evt_1  task.finished  #2  retry  503  http_5xx  41ms  endpoint answered 503  next 2026-11-23T10:01:00Z\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	out.Reset()
	if err := readTail(strings.NewReader(stream), &out, true); err != nil || !strings.HasSuffix(out.String(), string(b)+"\n") {
		t.Errorf("--json: %q %v", out.String(), err)
	}
}
