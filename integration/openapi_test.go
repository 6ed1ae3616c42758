package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hookgate/hookgate/internal/apispec"
)

// TestOpenAPIIngest holds the ingest API to the description the admin
// API serves (GET /webhooks/openapi.json): each answer of a real
// webhook_ingest has a described status and the fields of its schema.
// (The admin API's answers are checked in module's TestOpenAPIAnswersMatch.)
func TestOpenAPIIngest(t *testing.T) {
	s := newSink(t, nil)
	g := startGateway(t, operateConfig(`
		route erp {
			topics task.*
			url `+s.URL+`
		}`))
	resp, err := client.Get("http://" + g.admin + "/webhooks/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sp, err := apispec.Parse(raw)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /webhooks/openapi.json: %d %v", resp.StatusCode, err)
	}
	const op = "/{ingest_path}"
	cases := []struct {
		method, ctype, body string
		want                int
	}{
		{"POST", "application/json", `{"type":"task.finished","id":"oa-1","data":{"k":1}}`, 202},
		{"POST", "application/json", `{"type":"task.finished","id":"oa-1","data":{"k":1}}`, 200},
		{"POST", "application/json", `[{"type":"task.finished","id":"oa-2","data":1},{"type":"task.finished","id":"oa-1","data":2}]`, 202},
		{"POST", "application/json", `{"type":"other.thing","data":{}}`, 202},
		{"POST", "application/json", `{"type":"task.finished","data":{},"extra":1}`, 400},
		{"POST", "application/json", `[]`, 400},
		{"POST", "text/plain", `hello`, 415},
		{"GET", "", "", 405},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, g.ingest+"/events", strings.NewReader(c.body))
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil || resp.StatusCode != c.want {
			t.Errorf("%s %s: %d (%v), want %d", c.method, c.body, resp.StatusCode, err, c.want)
			continue
		}
		ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
		// GET is not described as an operation; its 405 is the POST's.
		schema, ok := sp.Response("POST", op, resp.StatusCode, ct)
		if !ok {
			t.Errorf("%s %s: %d %s is not described", c.method, c.body, resp.StatusCode, ct)
			continue
		}
		for _, e := range sp.Check(c.method+" "+c.body, doc, schema) {
			t.Error(e)
		}
	}
}
