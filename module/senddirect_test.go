package module

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hookgate/hookgate/module/egress"
)

// sendDirect answers as an http.Client that never follows redirects
// would: same status, same error text, same requests seen by the server
// (credentials from the URL included), for plain answers, every kind of
// redirect (with a Location, without one, a malformed one), a refused
// connection, https to a plain-HTTP server and credentials in the URL.
func TestSendDirectMatchesClient(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" auth="+r.Header.Get("Authorization")+" body="+string(b))
		mu.Unlock()
		switch p := r.URL.Path; {
		case p == "/ok":
			io.WriteString(w, "fine")
		case p == "/noloc":
			w.WriteHeader(302)
		case p == "/badloc":
			w.Header()["Location"] = []string{"http://[::1"}
			w.WriteHeader(307)
		case strings.HasPrefix(p, "/r"):
			w.Header().Set("Location", "/final")
			code, _ := strconv.Atoi(p[2:])
			w.WriteHeader(code)
		default:
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String() + "/x"
	ln.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	targets := []string{
		srv.URL + "/ok", srv.URL + "/missing", srv.URL + "/noloc", srv.URL + "/badloc",
		srv.URL + "/r301", srv.URL + "/r302", srv.URL + "/r303", srv.URL + "/r307", srv.URL + "/r308",
		"http://alice:s3cret@" + host + "/ok", "http://bob@" + host + "/ok",
		"http://alice:s3cret@" + host + "/badloc",
		refused, "http://alice:s3cret@" + strings.TrimPrefix(refused, "http://"),
		"https://" + host + "/ok",
	}
	tr := egress.NewTransport((&net.Dialer{}).DialContext, nil)
	defer tr.CloseIdleConnections()
	client := egress.NewHTTPClient(tr, noRedirects)
	type outcome struct {
		status int
		body   string
		err    string
		seen   []string
	}
	run := func(target string, withAuth bool, send func(*http.Request) (*http.Response, error)) outcome {
		mu.Lock()
		seen = nil
		mu.Unlock()
		req, err := newPost(context.Background(), target, []byte(`{"id":"evt_1"}`))
		if err != nil {
			t.Fatal(err)
		}
		if withAuth {
			req.Header.Set("Authorization", "Bearer own")
		}
		var o outcome
		resp, err := send(req)
		if err != nil {
			o.err = err.Error()
		}
		if resp != nil {
			o.status = resp.StatusCode
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			o.body = string(b)
		}
		mu.Lock()
		o.seen = seen
		mu.Unlock()
		return o
	}
	for _, target := range targets {
		for _, withAuth := range []bool{false, true} {
			want := run(target, withAuth, client.Do)
			got := run(target, withAuth, func(req *http.Request) (*http.Response, error) { return sendDirect(client.Transport, req) })
			if got.status != want.status || got.body != want.body || got.err != want.err || strings.Join(got.seen, "|") != strings.Join(want.seen, "|") {
				t.Errorf("%s (own Authorization %v):\n sendDirect  %+v\n http.Client %+v", target, withAuth, got, want)
			}
		}
	}
}

// Routes whose egress policy follows no redirects send directly; those
// that follow some go through http.Client.
func TestRouteDirectFollowsPolicy(t *testing.T) {
	for _, follow := range []int{0, 2} {
		a := &App{
			Routes:     map[string]*Route{"r": {Topics: []string{"*"}, URL: "https://erp.example.com/"}},
			routeOrder: []string{"r"},
			Egress:     map[string]*egress.Policy{"default": {FollowRedirects: follow}},
		}
		r, err := compileRoute("r", a.Routes["r"])
		if err != nil {
			t.Fatal(err)
		}
		a.routes = map[string]*route{"r": r}
		if err := a.provisionEgress(); err != nil {
			t.Fatal(err)
		}
		egress.Release(a.egressKeys)
		if r.direct() != (follow == 0) {
			t.Errorf("follow_redirects %d: direct %v", follow, r.direct())
		}
	}
}
