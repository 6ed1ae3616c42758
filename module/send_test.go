package module

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/hookgate/hookgate/module/signing"
	"github.com/hookgate/hookgate/persist"
)

const sendSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestSampleFor(t *testing.T) {
	cases := []struct {
		rc       Route
		typ, dat string
	}{
		{Route{Topics: []string{"task.*", "task.finished"}}, "task.finished", `{"test":true}`},
		{Route{Topics: []string{"**"}}, "hookgate.test", `{"test":true}`},
		{Route{Topics: []string{"a.b"}, SampleEvent: &SampleEvent{Data: json.RawMessage(`{"x":1}`)}}, "a.b", `{"x":1}`},
		{Route{Topics: []string{"a.b"}, SampleEvent: &SampleEvent{Type: "c.d"}}, "c.d", `{"test":true}`},
	}
	for _, c := range cases {
		s := sampleFor(&c.rc)
		if s.Type != c.typ || string(s.Data) != c.dat {
			t.Errorf("%+v: got %q %s, want %q %s", c.rc.Topics, s.Type, s.Data, c.typ, c.dat)
		}
	}
	bad := Route{Topics: []string{"x"}, URL: "http://h", SampleEvent: &SampleEvent{Data: json.RawMessage(`{`)}}
	if err := bad.Validate(); err == nil {
		t.Error("a sample_event with data that is not JSON passed Validate")
	}
}

func TestSendThroughTheRoute(t *testing.T) {
	type seen struct {
		h    http.Header
		body []byte
	}
	got := make(chan seen, 4)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Header.Clone(), b}
		w.Header().Set("X-Sink", "yes")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"ok":true}`)
	}))
	defer sink.Close()
	stop := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer hang.Close()
	defer close(stop)

	te := startTestEngine(t, "", map[string]*Route{
		"erp": {Topics: []string{"task.*", "task.finished"}, URL: sink.URL + "/hook/{event.type}",
			Headers: http.Header{"Authorization": {"Bearer t0k"}},
			Sign:    &SignConfig{Secrets: []string{sendSecret}}},
		"slow": {URL: hang.URL, Timeout: caddy.Duration(200 * time.Millisecond)},
	}, nil)

	res, err := te.Send(context.Background(), "erp", nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 202 || res.Class != "" || res.Body != `{"ok":true}` || res.Headers.Get("X-Sink") != "yes" ||
		!strings.HasPrefix(res.EventID, "test_") || res.EventType != "task.finished" || res.DurationMS <= 0 {
		t.Fatalf("answer: %+v", res)
	}
	s := <-got
	if s.h.Get("Webhook-Test") != "true" || s.h.Get("Webhook-Id") != res.EventID || s.h.Get("Authorization") != "Bearer t0k" {
		t.Errorf("request headers: %v", s.h)
	}
	v, err := signing.NewVerifier("standard", []string{sendSecret}, "", "", "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(s.h, s.body, time.Now()); err != nil {
		t.Errorf("signature of the test request: %v", err)
	}
	var env struct {
		ID, Type string
		Data     map[string]any
	}
	if err := json.Unmarshal(s.body, &env); err != nil || env.ID != res.EventID || env.Data["test"] != true {
		t.Errorf("body %s: %v", s.body, err)
	}

	// The operator's own event; still nothing stored or counted.
	res, err = te.Send(context.Background(), "erp", &persist.Event{Type: "task.created", Data: []byte(`{"n":2}`)})
	if err != nil || res.EventType != "task.created" {
		t.Fatalf("%+v %v", res, err)
	}
	s = <-got
	if !strings.Contains(string(s.body), `"data":{"n":2}`) {
		t.Errorf("body %s", s.body)
	}
	if _, err := te.store.Event(res.EventID); err == nil {
		t.Error("the test event was stored")
	}
	st := te.stats("erp")
	if st.Delivered != 0 || st.Pending != 0 || !st.LastSuccess.IsZero() {
		t.Errorf("a test send moved the route's counters: %+v", st)
	}

	// A hanging endpoint: the route's timeout, class timeout, circuit
	// and counters untouched.
	start := time.Now()
	res, err = te.Send(context.Background(), "slow", nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Class != classTimeout || res.Status != 0 || time.Since(start) > 5*time.Second {
		t.Errorf("hanging endpoint: %+v after %v", res, time.Since(start))
	}
	if st := te.stats("slow"); st.Circuit != circuitClosed || !st.LastFailure.IsZero() {
		t.Errorf("a failed test send touched the route: %+v", st)
	}

	if _, err := te.Send(context.Background(), "nope", nil); err != ErrUnknownRoute {
		t.Errorf("unknown route: %v", err)
	}
}

func TestAdminSend(t *testing.T) {
	sink := newCountingSink(t, nil)
	te := startTestEngine(t, "", map[string]*Route{"erp": {URL: sink.URL}}, nil)
	a := adminFor(te.Engine)
	call := func(target, body string) (*httptest.ResponseRecorder, apiErrorBody) {
		req := httptest.NewRequest("POST", target, strings.NewReader(body))
		rec := httptest.NewRecorder()
		a.serve(rec, req)
		var eb apiErrorBody
		_ = json.Unmarshal(rec.Body.Bytes(), &eb)
		return rec, eb
	}
	rec, _ := call("/webhooks/routes/erp/send", `{"type":"a.b","data":{"k":1}}`)
	var ans SendResult
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || rec.Code != 200 || ans.Status != 200 || ans.EventType != "a.b" {
		t.Fatalf("send: %d %s", rec.Code, rec.Body)
	}
	if rec, _ := call("/webhooks/routes/erp/send", ""); rec.Code != 200 || sink.posts.Load() != 2 {
		t.Errorf("send without a body: %d %s", rec.Code, rec.Body)
	}
	if rec, eb := call("/webhooks/routes/nope/send", ""); rec.Code != 404 || eb.Error != "unknown_route" {
		t.Errorf("unknown route: %d %+v", rec.Code, eb)
	}
	if rec, eb := call("/webhooks/routes/erp/send", `{"typ":"x"}`); rec.Code != 400 || eb.Error != "bad_request" {
		t.Errorf("bad body: %d %+v", rec.Code, eb)
	}
	rec, _ = callAdmin(t, a, "GET", "/webhooks/routes/erp/send", nil)
	if rec.Code != 405 || rec.Header().Get("Allow") != "POST" {
		t.Errorf("GET send: %d %v", rec.Code, rec.Header())
	}
}
