package module

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/apispec"
)

// The OpenAPI description against the real handlers, both ways: every
// admin endpoint the router answers is described, every described
// operation is exercised here, and every answer is checked against its
// schema (no field the schema lacks, none it requires missing, types and
// enums). A field added to an answer, or renamed, without the
// description fails this test.

func loadSpec(t *testing.T) *apispec.Spec {
	t.Helper()
	sp, err := apispec.Parse(OpenAPI())
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return sp
}

func TestOpenAPICoversTheAdminRouter(t *testing.T) {
	sp := loadSpec(t)
	described := map[string]bool{}
	for _, op := range sp.Ops() {
		if strings.Contains(op, " /webhooks/") {
			described[op] = true
		}
	}
	served := map[string]bool{}
	for _, ep := range adminEndpoints {
		op := ep.method + " " + adminPrefix + ep.path
		served[op] = true
		if !described[op] {
			t.Errorf("%s is served but not in openapi.json", op)
		}
	}
	for op := range described {
		if !served[op] {
			t.Errorf("%s is in openapi.json but not served", op)
		}
	}
	// The walker must catch drift (it is what the next test relies on).
	if errs := sp.Check("", map[string]any{"route": "r", "replayed": 1.0, "extra": true}, map[string]any{"$ref": "#/components/schemas/ReplayAnswer"}); len(errs) != 1 {
		t.Errorf("an extra field: %v", errs)
	}
	if errs := sp.Check("", map[string]any{"route": "r"}, map[string]any{"$ref": "#/components/schemas/ReplayAnswer"}); len(errs) != 1 {
		t.Errorf("a missing field: %v", errs)
	}
	if errs := sp.Check("", map[string]any{"route": "r", "replayed": "1"}, map[string]any{"$ref": "#/components/schemas/ReplayAnswer"}); len(errs) != 1 {
		t.Errorf("a wrong type: %v", errs)
	}
}

func TestOpenAPIAnswersMatch(t *testing.T) {
	old := tailHeartbeat
	tailHeartbeat = 20 * time.Millisecond
	t.Cleanup(func() { tailHeartbeat = old })
	sp := loadSpec(t)
	sink := newCountingSink(t, nil)
	bad := newCountingSink(t, func(int64) int { return 400 })
	te := startTestEngine(t, "", map[string]*Route{"r": {URL: sink.URL}, "bad": {URL: bad.URL}}, nil)
	evID := te.post(`{"k":"v"}`)
	waitUntil(t, "the deliveries", func() bool { return te.stats("r").Delivered == 1 && te.stats("bad").Dead == 1 })
	rec, err := te.Event(evID)
	if err != nil {
		t.Fatal(err)
	}
	dlvID := rec.Deliveries[0].ID
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { adminFor(te.Engine).serve(w, r) }))
	defer srv.Close()

	type call struct{ method, target, body string }
	examples := map[string][]call{
		"GET /webhooks/openapi.json": {{"GET", "/webhooks/openapi.json", ""}},
		"GET /webhooks/stats":        {{"GET", "/webhooks/stats", ""}, {"DELETE", "/webhooks/stats", ""}},
		"GET /webhooks/events/{id}":  {{"GET", "/webhooks/events/" + evID, ""}, {"GET", "/webhooks/events/nope", ""}},
		"GET /webhooks/deliveries": {{"GET", "/webhooks/deliveries?limit=1", ""}, {"GET", "/webhooks/deliveries?status=dead", ""},
			{"GET", "/webhooks/deliveries?cursor=zz", ""}, {"GET", "/webhooks/deliveries?type=t&since=1h&until=0s", ""},
			{"GET", "/webhooks/deliveries?since=2h&until=3h", ""}},
		"POST /webhooks/deliveries/{id}/retry": {{"POST", "/webhooks/deliveries/" + dlvID + "/retry", ""}, {"POST", "/webhooks/deliveries/nope/retry", ""}},
		"POST /webhooks/routes/{name}/replay":  {{"POST", "/webhooks/routes/bad/replay?since=1h", ""}, {"POST", "/webhooks/routes/nope/replay", ""}, {"POST", "/webhooks/routes/bad/replay?since=x", ""}},
		"POST /webhooks/routes/{name}/pause":   {{"POST", "/webhooks/routes/bad/pause", ""}, {"POST", "/webhooks/routes/nope/pause", ""}},
		"POST /webhooks/routes/{name}/resume":  {{"POST", "/webhooks/routes/bad/resume", ""}},
		"POST /webhooks/routes/{name}/send": {{"POST", "/webhooks/routes/r/send", ""}, {"POST", "/webhooks/routes/bad/send", `{"type":"x.y","data":[1]}`},
			{"POST", "/webhooks/routes/nope/send", ""}, {"POST", "/webhooks/routes/r/send", `{"nope":1}`}},
		"POST /webhooks/routes/{name}/backfill": {{"POST", "/webhooks/routes/r/backfill?since=1h&dry_run=true", ""}, {"POST", "/webhooks/routes/r/backfill?since=1h", ""},
			{"POST", "/webhooks/routes/r/backfill", ""}, {"POST", "/webhooks/routes/nope/backfill?since=1h", ""}},
		"GET /webhooks/tail": {{"GET", "/webhooks/tail", ""}, {"GET", "/webhooks/tail?status=x", ""}},
	}
	for _, op := range sp.Ops() {
		if !strings.Contains(op, " /webhooks/") {
			continue // the ingest API: module/ingest and the integration tests
		}
		calls := examples[op]
		if len(calls) == 0 {
			t.Errorf("%s is described but this test does not call it: add an example", op)
			continue
		}
		method, path, _ := strings.Cut(op, " ")
		desc := sp.Paths[path][strings.ToLower(method)]
		responses, _ := desc["responses"].(map[string]any)
		ok2xx := false
		for _, c := range calls {
			if c.target == "/webhooks/tail" {
				// Post once the stream is open, so an outcome shows.
				go func() {
					waitUntil(t, "the tail", func() bool { return te.Subscribers() > 0 })
					te.post(`{}`)
				}()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			req, _ := http.NewRequestWithContext(ctx, c.method, srv.URL+c.target, strings.NewReader(c.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				cancel()
				t.Fatalf("%s %s: %v", c.method, c.target, err)
			}
			code := strconv.Itoa(resp.StatusCode)
			r, ok := responses[code].(map[string]any)
			if !ok {
				t.Errorf("%s %s: status %s is not described", c.method, c.target, code)
				resp.Body.Close()
				cancel()
				continue
			}
			ok2xx = ok2xx || resp.StatusCode < 300
			ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
			content, _ := r["content"].(map[string]any)
			media, ok := content[ct].(map[string]any)
			if !ok {
				t.Errorf("%s %s: %s answer of type %q is not described", c.method, c.target, code, ct)
			}
			schema, _ := media["schema"].(map[string]any)
			var doc any
			if ct == "text/event-stream" {
				doc = firstEvent(t, resp.Body)
			} else if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
				t.Errorf("%s %s: %v", c.method, c.target, err)
			}
			resp.Body.Close()
			cancel()
			for _, e := range sp.Check(c.method+" "+c.target+" "+code, doc, schema) {
				t.Error(e)
			}
		}
		if !ok2xx {
			t.Errorf("%s: no example got a 2xx answer", op)
		}
	}
}

// firstEvent reads an event stream up to its first data line and
// decodes it.
func firstEvent(t *testing.T, r io.Reader) any {
	t.Helper()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var v any
			if err := json.Unmarshal([]byte(data), &v); err != nil {
				t.Errorf("event data %s: %v", data, err)
			}
			return v
		}
	}
	t.Errorf("the stream ended without an event: %v", sc.Err())
	return nil
}
