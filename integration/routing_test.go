package integration

import (
	"bytes"
	"compress/gzip"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookgate/hookgate/persist"
)

func TestRulesOnNestedFieldsAndArrays(t *testing.T) {
	s := newSink(t, nil)
	g := startGateway(t, routesConfig(`
		route erp {
			topics task.finished
			url `+s.URL+`/erp
			when `+"`"+`event.data.flow == "Delivery" && event.data.priority == "High" && event.data.tags[1] == "urgent"`+"`"+`
		}
		route all {
			topics task.*
			url `+s.URL+`/all
		}`, ""))
	cases := []struct {
		body   string
		routes string
	}{
		{`{"type":"task.finished","data":{"flow":"Delivery","priority":"High","tags":["a","urgent"]}}`, "[all erp]"},
		{`{"type":"task.finished","data":{"flow":"Delivery","priority":"Low","tags":["a","urgent"]}}`, "[all]"},
		// Missing field and short array: evaluation errors are no match.
		{`{"type":"task.finished","data":{"flow":"Delivery","priority":"High"}}`, "[all]"},
		{`{"type":"task.finished","data":{"flow":"Delivery","priority":"High","tags":["a"]}}`, "[all]"},
		{`{"type":"task.finished","data":"not an object"}`, "[all]"},
	}
	for _, c := range cases {
		code, ans := g.post("/events", c.body)
		if code != 202 || fmt.Sprint(ans["routes"]) != c.routes {
			t.Errorf("%s: %d routes %v, want %s", c.body, code, ans["routes"], c.routes)
		}
	}
	got := s.waitFor(t, 6, 10*time.Second)
	erp := 0
	for _, r := range got {
		if r.Path == "/erp" {
			erp++
		}
	}
	if erp != 1 {
		t.Errorf("erp got %d deliveries, want 1", erp)
	}
}

func TestRuleCompileErrorNamesRouteAndPosition(t *testing.T) {
	s := newSink(t, nil)
	g := startGateway(t, routesConfig(`
		route ok {
			topics a
			url `+s.URL+`
		}`, ""))
	cases := map[string]string{
		"syntax":   "`event.data.x ==`",
		"not bool": "`event.data.x + 1`",
		"unknown":  "`evnt.data.x == 1`",
	}
	for name, expr := range cases {
		err := g.tryLoad(routesConfig(`
		route erp {
			topics a
			url `+s.URL+`
			when `+expr+`
		}`, ""))
		if err == nil {
			t.Errorf("%s: config with when %s loaded", name, expr)
			continue
		}
		if !strings.Contains(err.Error(), "route erp") || !strings.Contains(err.Error(), "when") {
			t.Errorf("%s: error does not name the route and the rule: %v", name, err)
		}
		if name != "not bool" && !strings.Contains(err.Error(), ":1:") {
			t.Errorf("%s: error has no position: %v", name, err)
		}
	}
	// The running config is untouched.
	if code, _ := g.post("/events", `{"type":"a","data":1}`); code != 202 {
		t.Errorf("gateway broken after refused configs: %d", code)
	}
}

func TestTransformAndTemplates(t *testing.T) {
	t.Setenv("HOOKGATE_TEST_HDR", "from-env")
	s := newSink(t, nil)
	g := startGateway(t, routesConfig(`
		route slack {
			topics task.created
			when `+"`"+`event.data.priority == "High"`+"`"+`
			url `+s.URL+`/slack
			transform `+"`"+`{"text": "High-priority task " + event.data.task_id, "n": [1, 2]}`+"`"+`
		}
		route plain {
			topics task.created
			url `+s.URL+`/plain
			transform `+"`"+`"task " + event.data.task_id`+"`"+`
			content_type "text/plain; charset=utf-8"
		}
		route tmpl {
			topics task.created
			url `+s.URL+`/t/{event.data.tenant}/x?q={event.data.q}&id={event.id}
			header X-Env {env.HOOKGATE_TEST_HDR}
			header X-Task "task {event.data.task_id} of {event.type}"
		}`, ""))
	code, ans := g.post("/events", `{"type":"task.created","id":"E1","data":{"priority":"High","task_id":"T-9","tenant":"a/b c?d","q":"x&y=z"}}`)
	if code != 202 || fmt.Sprint(ans["routes"]) != "[plain slack tmpl]" {
		t.Fatalf("%d %v", code, ans)
	}
	got := s.waitFor(t, 3, 10*time.Second)
	by := map[string]received{}
	for _, r := range got {
		by[strings.SplitN(r.Path, "/", 3)[1]] = r
	}
	if b := string(by["slack"].Body); b != `{"n":[1,2],"text":"High-priority task T-9"}` {
		t.Errorf("slack body %s", b)
	}
	if ct := by["slack"].Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("slack content type %q", ct)
	}
	if b := string(by["plain"].Body); b != "task T-9" || by["plain"].Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("plain: %q %q", b, by["plain"].Header.Get("Content-Type"))
	}
	tm := by["t"]
	if tm.Path != "/t/a%2Fb%20c%3Fd/x?q=x%26y%3Dz&id=E1" {
		t.Errorf("templated path %q", tm.Path)
	}
	if tm.Header.Get("X-Env") != "from-env" || tm.Header.Get("X-Task") != "task T-9 of task.created" {
		t.Errorf("templated headers %v", tm.Header)
	}
	// An event cannot smuggle a placeholder into a header.
	code, ans = g.post("/events", `{"type":"task.created","data":{"priority":"Low","task_id":"{env.HOOKGATE_TEST_HDR}","tenant":"x","q":"y"}}`)
	if code != 202 {
		t.Fatalf("%d %v", code, ans)
	}
	got = s.waitFor(t, 5, 10*time.Second)
	for _, r := range got[3:] {
		if strings.Contains(r.Header.Get("X-Task"), "from-env") || strings.Contains(string(r.Body), "from-env") {
			t.Errorf("event data was expanded as a placeholder: %v %s", r.Header, r.Body)
		}
	}
}

func TestMissingDataPathIsBadURL(t *testing.T) {
	s := newSink(t, nil)
	g := startGateway(t, routesConfig(`
		route erp {
			topics a
			url `+s.URL+`/{event.data.tenant}
			retry {
				schedule 100ms
			}
		}`, ""))
	code, ans := g.post("/events", `{"type":"a","data":{"other":1}}`)
	if code != 202 {
		t.Fatalf("%d %v", code, ans)
	}
	id := ans["id"].(string)
	var d *persist.Delivery
	eventually(t, 10*time.Second, "the delivery to die", func() bool {
		g.stop()
		d = onlyDelivery(t, g.storage, id)
		if d.Status == persist.StatusDead {
			return true
		}
		g.load(g.lastConfig)
		return false
	})
	if d.LastClass != "bad_url" || d.Attempts != 1 || !strings.Contains(d.LastError, "tenant") {
		t.Errorf("delivery %+v", d)
	}
	if n := len(s.requests()); n != 0 {
		t.Errorf("sink got %d requests", n)
	}
}

func TestSignedDeliveriesVerifyWithStandardWebhooks(t *testing.T) {
	const sec1 = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	const sec2 = "whsec_dGhpcyBpcyBhIHNlY29uZCBzZWNyZXQ="
	s := newSink(t, nil)
	g := startGateway(t, routesConfig(`
		route erp {
			topics a
			url `+s.URL+`/std
			sign `+sec1+` `+sec2+`
		}
		route billing {
			topics a
			url `+s.URL+`/hex
			sign hmac-sha256 billing-secret {
				header X-Signature
				encoding hex
			}
		}`, ""))
	if code, ans := g.post("/events", `{"type":"a","data":{"amount":12.5}}`); code != 202 {
		t.Fatalf("%d %v", code, ans)
	}
	for _, r := range s.waitFor(t, 2, 10*time.Second) {
		switch r.Path {
		case "/std":
			sigs := strings.Fields(r.Header.Get("Webhook-Signature"))
			if len(sigs) != 2 {
				t.Errorf("want one signature per secret, got %q", sigs)
			}
			// A receiver holding either secret accepts.
			for _, sec := range []string{sec1, sec2} {
				wh, err := standardwebhooks.NewWebhook(sec)
				if err != nil {
					t.Fatal(err)
				}
				if err := wh.Verify(r.Body, r.Header); err != nil {
					t.Errorf("receiver with one of the secrets rejects: %v", err)
				}
			}
			wh, _ := standardwebhooks.NewWebhook("whsec_" + "b3RoZXIgc2VjcmV0IG90aGVyIHNlY3JldA==")
			if wh.Verify(r.Body, r.Header) == nil {
				t.Errorf("a receiver with another secret accepts")
			}
		case "/hex":
			mac := hmac.New(sha256.New, []byte("billing-secret"))
			mac.Write(r.Body)
			if want := hex.EncodeToString(mac.Sum(nil)); r.Header.Get("X-Signature") != want {
				t.Errorf("X-Signature %q, want %q", r.Header.Get("X-Signature"), want)
			}
		}
	}
}

func TestInboundVerification(t *testing.T) {
	const ghSecret = "It's a Secret to Everybody"
	const swSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	t.Setenv("HOOKGATE_TEST_GH", ghSecret)
	s := newSink(t, nil)
	g := startGateway(t, routesConfig(`
		keep_unmatched
		route gh {
			topics github.**
			url `+s.URL+`/gh
			when `+"`"+`event.headers["x-github-event"] == "push"`+"`"+`
		}
		route sw {
			topics partner.*
			url `+s.URL+`/sw
		}`, `
	webhook_ingest /github {
		topic github.{http.request.header.X-GitHub-Event}
		verify hmac-sha256 {env.HOOKGATE_TEST_GH} {
			header X-Hub-Signature-256
			prefix sha256=
			encoding hex
		}
	}
	webhook_ingest /partner {
		topic partner.event
		verify standard `+swSecret+`
	}
	webhook_ingest /partner2 {
		topic partner.other
		verify standard `+swSecret+`
	}`))
	body := `{"ref":"refs/heads/main","n":1}`
	sign := func(b string) string {
		mac := hmac.New(sha256.New, []byte(ghSecret))
		mac.Write([]byte(b))
		return "sha256=" + hex.EncodeToString(mac.Sum(nil))
	}
	code, ans := g.post("/github", body, "X-GitHub-Event", "push", "X-Hub-Signature-256", sign(body))
	if code != 202 || fmt.Sprint(ans["routes"]) != "[gh]" {
		t.Fatalf("signed GitHub request: %d %v", code, ans)
	}
	got := s.waitFor(t, 1, 10*time.Second)[0]
	var env struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	json.Unmarshal(got.Body, &env)
	if env.Type != "github.push" || string(env.Data) != body {
		t.Errorf("delivered %s", got.Body)
	}
	// Tampered body: 401, nothing stored.
	code, ans = g.post("/github", `{"ref":"refs/heads/evil","n":1}`, "X-GitHub-Event", "push", "X-Hub-Signature-256", sign(body))
	if code != 401 || ans["error"] != "verification_failed" {
		t.Errorf("tampered: %d %v", code, ans)
	}
	// Signed, but without the header its topic is built from: refused,
	// not stored as type "github." (which github.** would route).
	code, ans = g.post("/github", body, "X-Hub-Signature-256", sign(body))
	if msg, _ := ans["message"].(string); code != 400 || ans["error"] != "invalid_event" || !strings.Contains(msg, "X-GitHub-Event") {
		t.Errorf("no X-GitHub-Event: %d %v, want 400 invalid_event naming the header", code, ans)
	}
	// Standard Webhooks inbound: valid, then an expired timestamp.
	wh, _ := standardwebhooks.NewWebhook(swSecret)
	postTo := func(path, id string, ts time.Time) (int, map[string]any) {
		sig, _ := wh.Sign(id, ts, []byte(body))
		return g.post(path, body, "webhook-id", id, "webhook-timestamp", strconv.FormatInt(ts.Unix(), 10), "webhook-signature", sig)
	}
	// The sender's message id makes the event id, in the endpoint's
	// namespace: its retry is a duplicate, the same id from another
	// endpoint is not.
	if code, ans := postTo("/partner", "msg_1", time.Now()); code != 202 || ans["id"] != "partner:msg_1" {
		t.Errorf("standard webhooks inbound: %d %v", code, ans)
	}
	if code, ans := postTo("/partner", "msg_1", time.Now()); code != 200 || ans["duplicate"] != true || ans["id"] != "partner:msg_1" {
		t.Errorf("the sender's retry: %d %v, want 200 duplicate", code, ans)
	}
	if code, ans := postTo("/partner2", "msg_1", time.Now()); code != 202 || ans["id"] != "partner2:msg_1" {
		t.Errorf("the same message id at another endpoint: %d %v, want 202 partner2:msg_1", code, ans)
	}
	if code, ans := postTo("/partner", "msg_2", time.Now().Add(-time.Hour)); code != 401 {
		t.Errorf("expired timestamp: %d %v", code, ans)
	}
	s.waitFor(t, 3, 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	if n := len(s.requests()); n != 3 {
		t.Errorf("sink got %d requests, want 3", n)
	}
	g.stop()
	st := openStore(t, g.storage)
	if _, err := st.Event("partner:msg_2"); err == nil {
		t.Errorf("an event that failed verification was stored")
	}
	for _, id := range []string{"partner:msg_1", "partner2:msg_1"} {
		ev, err := st.Event(id)
		if err != nil {
			t.Errorf("verified event %s not stored: %v", id, err)
			continue
		}
		if ev.Headers["webhook-id"] != "msg_1" {
			t.Errorf("event %s keeps webhook-id %q, want the sender's msg_1", id, ev.Headers["webhook-id"])
		}
	}
}

// An inbound body that is not UTF-8 reaches the endpoint byte for byte,
// as data_base64, so a receiver can still check the sender's signature
// over it; a text body stays a JSON string under data.
func TestInboundBodyKeptByteForByte(t *testing.T) {
	const secret = "binary-sender-secret"
	t.Setenv("HOOKGATE_TEST_BIN", secret)
	s := newSink(t, nil)
	g := startGateway(t, routesConfig(`
		route bin {
			topics partner.**
			url `+s.URL+`/bin
		}`, `
	webhook_ingest /partner {
		topic partner.upload
		verify hmac-sha256 {env.HOOKGATE_TEST_BIN} {
			header X-Signature
			encoding hex
		}
	}`))
	raw := "caf\xe9 \xff\xfe\x00 bytes"
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(raw))
	sig := hex.EncodeToString(mac.Sum(nil))
	code, ans := g.post("/partner", raw, "Content-Type", "application/octet-stream", "X-Signature", sig)
	if code != 202 {
		t.Fatalf("signed binary body: %d %v", code, ans)
	}
	code, ans = g.post("/partner", "plain text ✓", "Content-Type", "text/plain; charset=utf-8",
		"X-Signature", hmacHex(secret, "plain text ✓"))
	if code != 202 {
		t.Fatalf("signed text body: %d %v", code, ans)
	}
	got := s.waitFor(t, 2, 10*time.Second)
	var bin, text struct {
		Data       json.RawMessage `json:"data"`
		DataBase64 *string         `json:"data_base64"`
	}
	json.Unmarshal(got[0].Body, &bin)
	json.Unmarshal(got[1].Body, &text)
	if bin.DataBase64 == nil || bin.Data != nil {
		t.Fatalf("binary body delivered as %s, want data_base64 and no data", got[0].Body)
	}
	dec, err := base64.StdEncoding.DecodeString(*bin.DataBase64)
	if err != nil || string(dec) != raw {
		t.Fatalf("data_base64 decodes to %q (%v), want %q", dec, err, raw)
	}
	if hmacHex(secret, string(dec)) != sig {
		t.Errorf("the sender's signature does not verify over the delivered bytes")
	}
	if text.DataBase64 != nil || string(text.Data) != `"plain text ✓"` {
		t.Errorf("text body delivered as %s, want a JSON string under data", got[1].Body)
	}
	// The admin API shows the same bytes.
	a := g.adminCall("GET", "/webhooks/events/"+eventIDOf(t, got[0].Body))
	var ev struct {
		Event struct {
			DataBase64  string `json:"data_base64"`
			ContentType string `json:"content_type"`
		} `json:"event"`
	}
	if err := json.Unmarshal(a.raw, &ev); err != nil || a.code != 200 {
		t.Fatalf("admin look-up: %d %s", a.code, a.raw)
	}
	if ev.Event.DataBase64 != *bin.DataBase64 || ev.Event.ContentType != "application/octet-stream" {
		t.Errorf("admin look-up: data_base64 %q content_type %q", ev.Event.DataBase64, ev.Event.ContentType)
	}
}

func hmacHex(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return hex.EncodeToString(mac.Sum(nil))
}

func eventIDOf(t *testing.T, envelope []byte) string {
	t.Helper()
	var e struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(envelope, &e); err != nil || e.ID == "" {
		t.Fatalf("no id in delivered body %s", envelope)
	}
	return e.ID
}

// Stripe and Slack sign a timestamp with the body; Slack's handshake is
// answered with its challenge and stored as nothing.
func TestInboundStripeAndSlack(t *testing.T) {
	const stripeSecret = "whsec_test_stripe_0123456789"
	const slackSecret = "8f742231b10e8888abcd99yyyzzz85a5"
	t.Setenv("HOOKGATE_TEST_SLACK", slackSecret)
	s := newSink(t, nil)
	g := startGateway(t, routesConfig(`
		route stripe {
			topics stripe.*
			url `+s.URL+`/stripe
		}
		route slack {
			topics slack.*
			url `+s.URL+`/slack
		}`, `
	webhook_ingest /stripe {
		topic stripe.event
		verify stripe `+stripeSecret+` {
			tolerance 10m
		}
	}
	webhook_ingest /slack {
		topic slack.event
		verify slack {env.HOOKGATE_TEST_SLACK}
	}`))
	mac := func(secret, msg string) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(msg))
		return hex.EncodeToString(m.Sum(nil))
	}
	stripeSig := func(body string, at time.Time) string {
		ts := strconv.FormatInt(at.Unix(), 10)
		return "t=" + ts + ",v1=" + mac(stripeSecret, ts+"."+body)
	}
	slackPost := func(body string, at time.Time) (int, map[string]any) {
		ts := strconv.FormatInt(at.Unix(), 10)
		return g.post("/slack", body, "X-Slack-Request-Timestamp", ts,
			"X-Slack-Signature", "v0="+mac(slackSecret, "v0:"+ts+":"+body))
	}

	charge := `{"id":"evt_1","type":"charge.succeeded"}`
	if code, ans := g.post("/stripe", charge, "Stripe-Signature", stripeSig(charge, time.Now())); code != 202 || ans["id"] != "stripe:evt_1" {
		t.Fatalf("signed Stripe event: %d %v, want 202 with the event's own id", code, ans)
	}
	// Stripe's retry of it (signed anew) is a duplicate: the id is in
	// the body's "id".
	if code, ans := g.post("/stripe", charge, "Stripe-Signature", stripeSig(charge, time.Now())); code != 200 || ans["duplicate"] != true {
		t.Errorf("Stripe's retry: %d %v, want 200 duplicate", code, ans)
	}
	// Within the endpoint's 10m tolerance, then outside it.
	charge2 := `{"id":"evt_2","type":"charge.succeeded"}`
	if code, ans := g.post("/stripe", charge2, "Stripe-Signature", stripeSig(charge2, time.Now().Add(-8*time.Minute))); code != 202 {
		t.Errorf("Stripe event signed 8 minutes ago, tolerance 10m: %d %v", code, ans)
	}
	if code, ans := g.post("/stripe", charge, "Stripe-Signature", stripeSig(charge, time.Now().Add(-time.Hour))); code != 401 || ans["error"] != "verification_failed" {
		t.Errorf("Stripe event signed an hour ago: %d %v", code, ans)
	}
	if code, _ := g.post("/stripe", `{"id":"evt_2"}`, "Stripe-Signature", stripeSig(charge, time.Now())); code != 401 {
		t.Errorf("Stripe signature over another body: %d", code)
	}
	// Sent gzipped, signed as JSON: verified and kept decoded.
	charge3 := `{"id":"evt_3","type":"charge.refunded"}`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(charge3))
	zw.Close()
	if code, ans := g.post("/stripe", gz.String(), "Content-Encoding", "gzip", "Stripe-Signature", stripeSig(charge3, time.Now())); code != 202 || ans["id"] != "stripe:evt_3" {
		t.Errorf("gzipped Stripe event: %d %v, want 202 with the id from the decoded body", code, ans)
	}
	if code, ans := g.post("/stripe", gz.String(), "Content-Encoding", "br", "Stripe-Signature", stripeSig(charge3, time.Now())); code != 415 {
		t.Errorf("Content-Encoding br: %d %v, want 415", code, ans)
	}

	// The handshake: answered, not stored, and only when signed.
	handshake := `{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`
	if code, ans := slackPost(handshake, time.Now()); code != 200 || ans["challenge"] != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" || len(ans) != 1 {
		t.Errorf("Slack url_verification: %d %v, want 200 with the challenge alone", code, ans)
	}
	if code, _ := g.post("/slack", handshake); code != 401 {
		t.Errorf("unsigned url_verification: %d, want 401", code)
	}
	mention := `{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention","text":"hi"}}`
	if code, ans := slackPost(mention, time.Now()); code != 202 || ans["id"] != "slack:Ev08MFMKH6" {
		t.Errorf("signed Slack event: %d %v, want 202 with its event_id", code, ans)
	}
	if code, ans := slackPost(mention, time.Now()); code != 200 || ans["duplicate"] != true {
		t.Errorf("Slack's retry: %d %v, want 200 duplicate", code, ans)
	}
	if code, _ := slackPost(mention, time.Now().Add(-6*time.Minute)); code != 401 {
		t.Errorf("Slack event signed 6 minutes ago: %d, want 401", code)
	}
	got := s.waitFor(t, 4, 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	paths := map[string]int{}
	for _, r := range s.requests() {
		paths[r.Path]++
		if bytes.Contains(r.Body, []byte("evt_3")) && !bytes.Contains(r.Body, []byte(`"data":{"id":"evt_3","type":"charge.refunded"}`)) {
			t.Errorf("the gzipped event was delivered as %s, want its JSON as data", r.Body)
		}
	}
	if paths["/stripe"] != 3 || paths["/slack"] != 1 || len(s.requests()) != 4 {
		t.Errorf("delivered %v, want 3 to /stripe and 1 to /slack (the handshake is not an event)", paths)
	}
	for _, r := range got {
		for k := range r.Header {
			if strings.Contains(strings.ToLower(k), "stripe-signature") || strings.Contains(strings.ToLower(k), "x-slack-signature") {
				t.Errorf("delivery to %s carries the sender's %s", r.Path, k)
			}
		}
	}
}
