package module

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The OpenAPI description against the real handlers, both ways: every
// admin endpoint the router answers is described, every described
// operation is exercised here, and every answer is checked against its
// schema (no field the schema lacks, none it requires missing, types and
// enums). A field added to an answer, or renamed, without the
// description fails this test.

type apiSpec struct {
	OpenAPI string                               `json:"openapi"`
	Paths   map[string]map[string]map[string]any `json:"paths"`
	Comps   struct {
		Schemas map[string]map[string]any `json:"schemas"`
	} `json:"components"`
}

func loadSpec(t *testing.T) *apiSpec {
	t.Helper()
	var sp apiSpec
	if err := json.Unmarshal(OpenAPI(), &sp); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if sp.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", sp.OpenAPI)
	}
	return &sp
}

func (sp *apiSpec) resolve(s map[string]any) map[string]any {
	for i := 0; i < 10; i++ {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		s = sp.Comps.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
		if s == nil {
			return map[string]any{"not": "resolvable " + ref}
		}
	}
	return s
}

// check returns how v departs from schema s ("" paths are the root).
func (sp *apiSpec) check(at string, v any, s map[string]any) []string {
	s = sp.resolve(s)
	if _, bad := s["not"]; bad {
		return []string{at + ": " + fmt.Sprint(s["not"])}
	}
	if alts, ok := s["oneOf"].([]any); ok {
		var all []string
		for _, a := range alts {
			errs := sp.check(at, v, a.(map[string]any))
			if len(errs) == 0 {
				return nil
			}
			all = append(all, errs...)
		}
		return append([]string{at + ": matches no alternative of oneOf"}, all...)
	}
	var errs []string
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		errs = append(errs, fmt.Sprintf("%s: %v is not one of %v", at, v, enum))
	}
	switch s["type"] {
	case nil:
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: %T, want an object", at, v))
		}
		props, _ := s["properties"].(map[string]any)
		for k, x := range m {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, sp.check(at+"."+k, x, ps)...)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					errs = append(errs, fmt.Sprintf("%s: field %q is not in the schema", at, k))
				}
			case map[string]any:
				errs = append(errs, sp.check(at+"."+k, x, ap)...)
			case nil:
				if props != nil {
					errs = append(errs, fmt.Sprintf("%s: field %q is not in the schema", at, k))
				}
			}
		}
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := m[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required field %q missing", at, r))
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: %T, want an array", at, v))
		}
		items, _ := s["items"].(map[string]any)
		for i, x := range a {
			errs = append(errs, sp.check(at+"["+strconv.Itoa(i)+"]", x, items)...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return append(errs, fmt.Sprintf("%s: %T, want a string", at, v))
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %q is not a date-time", at, str))
			}
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != math.Trunc(f) {
			errs = append(errs, fmt.Sprintf("%s: %v, want an integer", at, v))
		}
	case "number":
		if _, ok := v.(float64); !ok {
			errs = append(errs, fmt.Sprintf("%s: %v, want a number", at, v))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			errs = append(errs, fmt.Sprintf("%s: %v, want a boolean", at, v))
		}
	default:
		errs = append(errs, fmt.Sprintf("%s: schema type %v is not understood by this test", at, s["type"]))
	}
	return errs
}

// specOp is a described operation: "GET /webhooks/stats".
func specOps(sp *apiSpec) []string {
	var ops []string
	for p, methods := range sp.Paths {
		for m := range methods {
			ops = append(ops, strings.ToUpper(m)+" "+p)
		}
	}
	sort.Strings(ops)
	return ops
}

func TestOpenAPICoversTheAdminRouter(t *testing.T) {
	sp := loadSpec(t)
	described := map[string]bool{}
	for _, op := range specOps(sp) {
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
	if errs := sp.check("", map[string]any{"route": "r", "replayed": 1.0, "extra": true}, map[string]any{"$ref": "#/components/schemas/ReplayAnswer"}); len(errs) != 1 {
		t.Errorf("an extra field: %v", errs)
	}
	if errs := sp.check("", map[string]any{"route": "r"}, map[string]any{"$ref": "#/components/schemas/ReplayAnswer"}); len(errs) != 1 {
		t.Errorf("a missing field: %v", errs)
	}
	if errs := sp.check("", map[string]any{"route": "r", "replayed": "1"}, map[string]any{"$ref": "#/components/schemas/ReplayAnswer"}); len(errs) != 1 {
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
			{"GET", "/webhooks/deliveries?cursor=zz", ""}},
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
	for _, op := range specOps(sp) {
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
			for _, e := range sp.check(c.method+" "+c.target+" "+code, doc, schema) {
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
