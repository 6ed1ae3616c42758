package console_test

import (
	"net/http"
	"net/url"
	"testing"
)

func TestSendTestEvent(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	tok := g.csrf("/console/")
	before := g.okHits.Load()
	a := g.post("/console/routes/erp/send", url.Values{"csrf": {tok}}, nil)
	if a.status != http.StatusOK {
		t.Fatalf("send to erp: HTTP %d\n%s", a.status, clip(a.body))
	}
	mustContain(t, "send to erp", a.body, "<title>Test event to erp · hookgate console</title>",
		"The endpoint accepted the test event: HTTP 200", "test_", `{&#34;ok&#34;:true}`, "Content-Type")
	if g.okHits.Load() != before+1 {
		t.Fatalf("the endpoint got %d requests, want 1", g.okHits.Load()-before)
	}
	if st := routeStats(g, "erp"); st != 0 {
		t.Fatalf("a test send left %d pending", st)
	}
	a = g.post("/console/routes/crm/send", url.Values{"csrf": {tok}}, nil)
	mustContain(t, "send to crm", a.body, "The endpoint answered HTTP 500", "http_5xx", "database is down")
	mustNotContain(t, "send to crm", a.body, "s3cret", urlToken)
	if l := g.logLines("console: test event sent"); len(l) != 2 || l[0]["user"] != testUser {
		t.Fatalf("send log lines %v, want two naming alice", l)
	}
	for _, c := range []struct {
		name   string
		path   string
		form   url.Values
		hdr    map[string]string
		status int
	}{
		{"unknown route", "/console/routes/nope/send", url.Values{"csrf": {tok}}, nil, http.StatusNotFound},
		{"no token", "/console/routes/erp/send", url.Values{}, nil, http.StatusForbidden},
		{"cross-origin", "/console/routes/erp/send", url.Values{"csrf": {tok}}, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
	} {
		if a := g.post(c.path, c.form, c.hdr); a.status != c.status {
			t.Errorf("%s: HTTP %d, want %d", c.name, a.status, c.status)
		}
	}
	if a := g.get("/console/routes/erp/send", true); a.status != http.StatusMethodNotAllowed {
		t.Errorf("GET send: HTTP %d, want 405", a.status)
	}
}
