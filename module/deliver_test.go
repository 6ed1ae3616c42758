package module

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/hookgate/hookgate/internal/testnet"
	"github.com/hookgate/hookgate/module/egress"
	"github.com/hookgate/hookgate/persist"
)

func TestClassifyStatus(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	date := "Mon, 23 Nov 2026 10:02:00 GMT"
	tests := []struct {
		status     int
		retryAfter string
		class      string
		retry      bool
		gone       bool
		after      time.Duration
	}{
		{200, "", "", false, false, 0},
		{201, "", "", false, false, 0},
		{202, "", "", false, false, 0},
		{204, "", "", false, false, 0},
		{299, "", "", false, false, 0},
		{204, "30", "", false, false, 0},
		{301, "", classHTTP3xx, false, false, 0},
		{302, "", classHTTP3xx, false, false, 0},
		{307, "", classHTTP3xx, false, false, 0},
		{308, "", classHTTP3xx, false, false, 0},
		{400, "", classHTTP4xx, false, false, 0},
		{400, "30", classHTTP4xx, false, false, 0},
		{401, "", classHTTP4xx, false, false, 0},
		{403, "", classHTTP4xx, false, false, 0},
		{404, "", classHTTP4xx, false, false, 0},
		{408, "", classHTTP4xx, true, false, 0},
		{408, "30", classHTTP4xx, true, false, 30 * time.Second},
		{410, "", classHTTP4xx, false, true, 0},
		{410, "30", classHTTP4xx, false, true, 0},
		{413, "", classHTTP4xx, false, false, 0},
		{422, "", classHTTP4xx, false, false, 0},
		{425, "", classHTTP4xx, true, false, 0},
		{429, "", classHTTP429, true, false, 0},
		{429, "120", classHTTP429, true, false, 120 * time.Second},
		{429, date, classHTTP429, true, false, 2 * time.Minute},
		{429, "soon", classHTTP429, true, false, 0},
		{499, "", classHTTP4xx, false, false, 0},
		{500, "", classHTTP5xx, true, false, 0},
		{502, "", classHTTP5xx, true, false, 0},
		{503, "", classHTTP5xx, true, false, 0},
		{503, "7", classHTTP5xx, true, false, 7 * time.Second},
		{503, date, classHTTP5xx, true, false, 2 * time.Minute},
		{504, "", classHTTP5xx, true, false, 0},
		{599, "", classHTTP5xx, true, false, 0},
		// Statuses no RFC defines as final: a broken server, retried.
		{101, "", classHTTP5xx, true, false, 0},
		{700, "", classHTTP5xx, true, false, 0},
		{999, "3", classHTTP5xx, true, false, 3 * time.Second},
	}
	for _, tc := range tests {
		res := result{status: tc.status}
		classifyStatus(&res, tc.retryAfter, now)
		if res.class != tc.class || res.retry != tc.retry || res.gone != tc.gone || res.retryAfter != tc.after {
			t.Errorf("%d (Retry-After %q): class %q retry %v gone %v retryAfter %v; want %q %v %v %v",
				tc.status, tc.retryAfter, res.class, res.retry, res.gone, res.retryAfter,
				tc.class, tc.retry, tc.gone, tc.after)
		}
		if ok := tc.class == ""; res.ok() != ok {
			t.Errorf("%d: ok() = %v, want %v", tc.status, res.ok(), ok)
		}
		wantErr := ""
		if tc.class != "" {
			wantErr = "endpoint answered " + strconv.Itoa(tc.status)
		}
		if res.err != wantErr {
			t.Errorf("%d: err %q, want %q", tc.status, res.err, wantErr)
		}
	}
}

// Errors as the transport returns them, built by hand.
func TestClassifyErrorConstructed(t *testing.T) {
	opErr := func(op string, err error) error {
		return &url.Error{Op: "Post", URL: "https://x.example/", Err: &net.OpError{Op: op, Net: "tcp", Err: err}}
	}
	tests := []struct {
		name  string
		err   error
		class string
		retry bool
	}{
		{"dns not found", opErr("dial", &net.DNSError{Err: "no such host", Name: "hookgate.invalid", IsNotFound: true}), classDNS, true},
		{"dns timeout", opErr("dial", &net.DNSError{Err: "i/o timeout", Name: "x.example", IsTimeout: true}), classDNS, true},
		{"bare dns", &net.DNSError{Err: "server misbehaving", Name: "x"}, classDNS, true},
		{"refused", opErr("dial", os.NewSyscallError("connect", syscall.ECONNREFUSED)), classConnect, true},
		{"reset", opErr("read", os.NewSyscallError("read", syscall.ECONNRESET)), classConnect, true},
		{"EOF", &url.Error{Op: "Post", URL: "http://x/", Err: io.EOF}, classConnect, true},
		{"unexpected EOF", &url.Error{Op: "Post", URL: "http://x/", Err: io.ErrUnexpectedEOF}, classConnect, true},
		{"unreachable", opErr("dial", os.NewSyscallError("connect", syscall.EHOSTUNREACH)), classConnect, true},
		{"deadline", &url.Error{Op: "Post", URL: "http://x/", Err: context.DeadlineExceeded}, classTimeout, true},
		{"i/o timeout", opErr("read", os.ErrDeadlineExceeded), classTimeout, true},
		{"unknown authority", &url.Error{Op: "Post", URL: "https://x/", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}, classTLS, true},
		{"bare unknown authority", x509.UnknownAuthorityError{}, classTLS, true},
		{"hostname", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "x"}, classTLS, true},
		{"expired", x509.CertificateInvalidError{Cert: &x509.Certificate{}, Reason: x509.Expired}, classTLS, true},
		{"record header", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, classTLS, true},
		{"alert", &url.Error{Op: "Post", URL: "https://x/", Err: &net.OpError{Op: "remote error", Err: tls.AlertError(40)}}, classTLS, true},
		{"alert from crypto/tls", opErr("remote error", errors.New("tls: certificate required")), classTLS, true},
		{"egress", &url.Error{Op: "Post", URL: "http://x/", Err: &net.OpError{Op: "dial", Err: &egress.DeniedError{Reason: "10.0.0.1 is private"}}}, classEgressDenied, false},
		{"egress beats timeout", fmt.Errorf("%w: %w", &egress.DeniedError{Reason: "x"}, context.DeadlineExceeded), classEgressDenied, false},
		{"scheme", &url.Error{Op: "Post", URL: "ftp://x/", Err: errors.New(`unsupported protocol scheme "ftp"`)}, classBadURL, false},
		{"anything else", errors.New("something odd"), classConnect, true},
	}
	for _, tc := range tests {
		class, retry := classifyError(tc.err, true)
		if class != tc.class || retry != tc.retry {
			t.Errorf("%s: classifyError(%v) = %q, %v; want %q, %v", tc.name, tc.err, class, retry, tc.class, tc.retry)
		}
	}

	// Errors of a request the client never asked a connection for: a
	// network cause still names its class, anything else is the client
	// refusing the request.
	before := []struct {
		name  string
		err   error
		class string
		retry bool
	}{
		{"invalid header value", &url.Error{Op: "Post", URL: "http://x/", Err: errors.New(`net/http: invalid header field value for "X-Tenant"`)}, classInvalidRequest, false},
		{"invalid header name", &url.Error{Op: "Post", URL: "http://x/", Err: errors.New(`net/http: invalid header field name "X Tenant"`)}, classInvalidRequest, false},
		{"anything else", errors.New("something odd"), classInvalidRequest, false},
		{"tls-looking text", errors.New("tls: is only a word here"), classInvalidRequest, false},
		{"refused", opErr("dial", os.NewSyscallError("connect", syscall.ECONNREFUSED)), classConnect, true},
		{"unreachable", opErr("dial", os.NewSyscallError("connect", syscall.EHOSTUNREACH)), classConnect, true},
		{"bare errno", syscall.ENETUNREACH, classConnect, true},
		{"dns", opErr("dial", &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}), classDNS, true},
		{"deadline", &url.Error{Op: "Post", URL: "http://x/", Err: context.DeadlineExceeded}, classTimeout, true},
		{"unknown authority", x509.UnknownAuthorityError{}, classTLS, true},
		{"egress", &egress.DeniedError{Reason: "x"}, classEgressDenied, false},
		{"scheme", &url.Error{Op: "Post", URL: "ftp://x/", Err: errors.New(`unsupported protocol scheme "ftp"`)}, classBadURL, false},
	}
	for _, tc := range before {
		class, retry := classifyError(tc.err, false)
		if class != tc.class || retry != tc.retry {
			t.Errorf("before a connection, %s: classifyError(%v) = %q, %v; want %q, %v", tc.name, tc.err, class, retry, tc.class, tc.retry)
		}
	}
}

// An error Go's client raises before it asks for a connection is
// invalid_request, told apart by the connection trace, not by its text.
func TestClassifyClientRefusalBeforeDialling(t *testing.T) {
	sink := newCountingSink(t, nil)
	send := func(target, value string) (class string, retry, attempted bool) {
		ctx, conn := traceConnAttempt(context.Background())
		req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, target, []byte("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header["X-Tenant"] = []string{value}
		resp, err := newSender().client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("X-Tenant %q to %s: sent", value, target)
		}
		class, retry = classifyError(err, conn.Load())
		return class, retry, conn.Load()
	}
	for _, v := range []string{"acme\r\nX-Injected: yes", "acme\x00", "acme\n"} {
		class, retry, attempted := send(sink.URL+"/hook", v)
		if class != classInvalidRequest || retry || attempted {
			t.Errorf("X-Tenant %q: class %q retry %v, connection attempted %v; want invalid_request, false, false", v, class, retry, attempted)
		}
	}
	if n := sink.posts.Load(); n != 0 {
		t.Errorf("the endpoint got %d requests with an invalid header", n)
	}
	// The trace does see a connection attempt: a refused port is connect.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if class, retry, attempted := send("http://"+closed+"/hook", "acme"); class != classConnect || !retry || !attempted {
		t.Errorf("closed port: class %q retry %v, connection attempted %v; want connect, true, true", class, retry, attempted)
	}
}

// A header template that takes a value from event data holding CR, LF or
// NUL makes a request that cannot be sent: the attempt fails at once as
// invalid_request, sends nothing, quotes no value and is breaker-neutral.
func TestAttemptHeaderValueFromEventData(t *testing.T) {
	sink := newCountingSink(t, nil)
	r := testRoute(t, &Route{URL: sink.URL + "/hook", Headers: http.Header{"X-Tenant": {"t-{event.data.tenant}"}}})
	for _, tenant := range []string{`acme\r\nX-Injected: yes`, `acme\u0000`, `acme\n`, `acme\u007f`} {
		j := testJob(time.Now())
		j.ev.Data = []byte(`{"tenant": "` + tenant + `"}`)
		res := newSender().attempt(context.Background(), r, j, time.Now())
		if res.class != classInvalidRequest || res.retry || res.status != 0 {
			t.Errorf("tenant %s: class %q retry %v status %d (%s); want invalid_request, final", tenant, res.class, res.retry, res.status, res.err)
		}
		if !strings.Contains(res.err, "X-Tenant") || strings.Contains(res.err, "acme") {
			t.Errorf("tenant %s: error %q should name the header, not its value", tenant, res.err)
		}
		if v := verdictOf(res); v != verdictNeutral {
			t.Errorf("tenant %s: breaker verdict %v, want neutral", tenant, v)
		}
	}
	if n := sink.posts.Load(); n != 0 {
		t.Errorf("the endpoint got %d requests", n)
	}
	// A tab is allowed in a header value and is sent.
	j := testJob(time.Now())
	j.ev.Data = []byte(`{"tenant": "a\tb"}`)
	if res := newSender().attempt(context.Background(), r, j, time.Now()); !res.ok() || sink.posts.Load() != 1 {
		t.Errorf("tab in a header value: class %q (%s), %d requests; want delivered", res.class, res.err, sink.posts.Load())
	}
}

// A header from a {file.*} that cannot be read (a secret file rotated
// away) sends nothing: the attempt fails as bad_url, is retried (the file
// may come back; the event is not at fault) and is breaker-neutral. Once
// the file is there, the next attempt sends its content.
func TestAttemptUnreadableFileHeader(t *testing.T) {
	var auth atomic.Value
	var posts atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		auth.Store(r.Header.Get("Authorization"))
	}))
	defer sink.Close()
	secret := filepath.Join(t.TempDir(), "token")
	r := testRoute(t, &Route{URL: sink.URL + "/hook", Headers: http.Header{"Authorization": {"Bearer {file." + secret + "}"}}})
	res := newSender().attempt(context.Background(), r, testJob(time.Now()), time.Now())
	if res.class != classBadURL || !res.retry || !strings.Contains(res.err, "Authorization") || !strings.Contains(res.err, "has no value") {
		t.Errorf("class %q retry %v (%s); want bad_url, retried, naming the header", res.class, res.retry, res.err)
	}
	if v := verdictOf(res); v != verdictNeutral {
		t.Errorf("breaker verdict %v, want neutral", v)
	}
	if n := posts.Load(); n != 0 {
		t.Fatalf("the endpoint got %d requests", n)
	}
	if err := os.WriteFile(secret, []byte("tok-9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := newSender().attempt(context.Background(), r, testJob(time.Now()), time.Now()); !res.ok() || auth.Load() != "Bearer tok-9" {
		t.Errorf("with the file back: %+v, Authorization %v; want delivered with Bearer tok-9", res, auth.Load())
	}
}

func testRoute(t *testing.T, rc *Route) *route {
	t.Helper()
	if rc.Topics == nil {
		rc.Topics = []string{"*"}
	}
	r, err := compileRoute("test", rc)
	if err != nil {
		t.Fatalf("compileRoute: %v", err)
	}
	return r
}

func testJob(now time.Time) *job {
	return &job{
		d: &persist.Delivery{ID: "dlv_01", EventID: "evt_01J", Route: "test", Status: persist.StatusPending, Created: now, Due: now},
		ev: &persist.Event{ID: "evt_01J", Type: "task.finished", Time: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
			Received: now, Data: []byte(`{"task_id": "T-1", "note": "caf\u00e9 é", "n": [1, 2.50]}`)},
	}
}

// quietTLSServer is an httptest TLS server that does not log handshake
// failures.
func quietTLSServer(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	return srv
}

// Real failures on loopback, through sender.attempt and classifyError.
func TestAttemptTransportFailures(t *testing.T) {
	// Connection refused: a port that was just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()

	// Accepts and never answers.
	silent := testnet.RawListener(t, func(c net.Conn) {
		io.Copy(io.Discard, c)
	})

	// Reads the request, then resets the connection.
	reset := testnet.RawListener(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Read(buf)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})

	// Resets the connection without reading anything.
	resetNow := testnet.RawListener(t, func(c net.Conn) {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})

	// Closes cleanly after reading the request: EOF before any response.
	eof := testnet.RawListener(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Read(buf)
		c.Close()
	})

	// Answers through a server handler that hijacks and resets.
	hijack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}))
	defer hijack.Close()

	// TLS with a certificate the sender does not trust.
	tlsSrv := quietTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(204)
	}))
	defer tlsSrv.Close()

	tests := []struct {
		name    string
		url     string
		timeout time.Duration
		class   string
		retry   bool
	}{
		{"connection refused", "http://" + refused + "/hook", 0, classConnect, true},
		{"never answers", "http://" + silent + "/hook", 300 * time.Millisecond, classTimeout, true},
		{"reset after request", "http://" + reset + "/hook", 0, classConnect, true},
		{"reset at once", "http://" + resetNow + "/hook", 0, classConnect, true},
		{"closed before response", "http://" + eof + "/hook", 0, classConnect, true},
		{"hijack and reset", hijack.URL + "/hook", 0, classConnect, true},
		{"untrusted certificate", tlsSrv.URL + "/hook", 0, classTLS, true},
	}
	s := newSender()
	now := time.Now()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := testRoute(t, &Route{URL: tc.url, Timeout: caddy.Duration(tc.timeout)})
			if tc.timeout == 0 {
				r.timeout = 5 * time.Second
			}
			start := time.Now()
			res := s.attempt(context.Background(), r, testJob(now), time.Now())
			if res.class != tc.class || res.retry != tc.retry {
				t.Errorf("class %q retry %v (err %q); want %q %v", res.class, res.retry, res.err, tc.class, tc.retry)
			}
			if res.status != 0 || res.err == "" || res.ok() {
				t.Errorf("status %d err %q ok %v: want 0, an error, not ok", res.status, res.err, res.ok())
			}
			if tc.class == classTimeout {
				if el := time.Since(start); el < tc.timeout || el > tc.timeout+3*time.Second {
					t.Errorf("timed out after %v, route timeout %v", el, tc.timeout)
				}
			}
		})
	}
}

// An https:// route whose endpoint speaks plain HTTP fails the TLS
// handshake. net/http turns the tls.RecordHeaderError into
// http.ErrSchemeMismatch, which classifyError does not recognise.
func TestAttemptHTTPSToPlainHTTP(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(204)
	}))
	defer plain.Close()
	r := testRoute(t, &Route{URL: strings.Replace(plain.URL, "http://", "https://", 1) + "/hook", Timeout: caddy.Duration(5 * time.Second)})
	res := newSender().attempt(context.Background(), r, testJob(time.Now()), time.Now())
	if res.class != classTLS || !res.retry {
		t.Errorf("BUG: https:// to a plain-HTTP endpoint: class %q retry %v (err %q); want tls, true (classifyError misses http.ErrSchemeMismatch)", res.class, res.retry, res.err)
	}
	if class, _ := classifyError(&url.Error{Op: "Post", URL: "https://x/", Err: http.ErrSchemeMismatch}, true); class != classTLS {
		t.Errorf("BUG: classifyError(http.ErrSchemeMismatch) = %q, want tls", class)
	}
}

// DNS failure without any DNS traffic: the test's resolver refuses to
// dial, so the .invalid name (RFC 6761) fails inside Go's resolver and
// never leaves the machine.
func TestAttemptDNSFailure(t *testing.T) {
	resolver := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			return nil, errors.New("no DNS in unit tests")
		},
	}
	s := newSender()
	s.client.HTTPClient.Transport = &http.Transport{
		DialContext: (&net.Dialer{Timeout: time.Second, Resolver: resolver}).DialContext,
	}
	r := testRoute(t, &Route{URL: "https://hookgate-test.invalid/hook", Timeout: caddy.Duration(5 * time.Second)})
	res := s.attempt(context.Background(), r, testJob(time.Now()), time.Now())
	if res.class != classDNS || !res.retry {
		t.Errorf("class %q retry %v (err %q); want dns, true", res.class, res.retry, res.err)
	}

	// And the shape the system resolver returns for a name that does not
	// exist.
	nx := &url.Error{Op: "Post", URL: "https://hookgate-test.invalid/hook", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: &net.DNSError{Err: "no such host", Name: "hookgate-test.invalid", IsNotFound: true}}}
	if class, retry := classifyError(nx, true); class != classDNS || !retry {
		t.Errorf("NXDOMAIN: %q %v, want dns true", class, retry)
	}
}

func TestAttemptBadURL(t *testing.T) {
	s := newSender()
	// The event's data makes the URL: each event can make a bad one.
	for _, u := range []string{"{event.data.task_id}", "http://{event.data.task_id}:99999/"} {
		r := testRoute(t, &Route{URL: u})
		res := s.attempt(context.Background(), r, testJob(time.Now()), time.Now())
		if res.class != classBadURL || res.retry {
			t.Errorf("url %s: class %q retry %v (%q); want bad_url, false", u, res.class, res.retry, res.err)
		}
	}
}

// A URL that no event changes is checked when the route is compiled:
// with global placeholders, as they are filled in then, so an unset
// variable fails the config instead of every delivery.
func TestBadURLRefusedAtLoad(t *testing.T) {
	t.Setenv("HG_TEST_BAD_URL", "ftp://x.example/")
	t.Setenv("HG_TEST_GOOD_URL", "https://x.example/hook")
	for u, want := range map[string]string{
		"{env.HG_TEST_BAD_URL}":         "with its placeholders filled in",
		"{env.HG_TEST_UNSET_VAR_XYZ}/x": "with its placeholders filled in",
		"{env.HG_TEST_UNSET_VAR_XYZ}":   "with its placeholders filled in",
		"https://":                      "expected an absolute",
		"http://127.0.0.1:99999/x":      "expected an absolute",
		"http://127.0.0.1:0/x":          "expected an absolute",
		"ftp://e.com":                   "expected an absolute",
		"https://{env.HG_TEST_UNSET}/x": "with its placeholders filled in",
	} {
		if _, err := compileRoute("r", &Route{URL: u, Topics: []string{"*"}}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("url %s: %v; want an error with %q", u, err, want)
		}
	}
	// A bad URL is not quoted in the error: it may hold a token.
	if _, err := compileRoute("r", &Route{URL: "https://hooks.example.com:99999/services/T0/SECRET", Topics: []string{"*"}}); err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("bad URL holding a token: %v; want an error without it", err)
	}
	for _, u := range []string{"{env.HG_TEST_GOOD_URL}", "https://{event.data.host}/x", "{event.data.url}", "http://h:/x", "http://[::1]:65535/"} {
		if _, err := compileRoute("r", &Route{URL: u, Topics: []string{"*"}}); err != nil {
			t.Errorf("url %s: %v", u, err)
		}
	}
}

// A route header that can never be sent, or that would collide with the
// signature, fails at load.
func TestHeaderConflictsRefusedAtLoad(t *testing.T) {
	for name, rc := range map[string]*Route{
		"control character":         {Headers: http.Header{"X-A": {"a\nb"}}},
		"NUL":                       {Headers: http.Header{"X-A": {"a\x00b"}}},
		"signature in Content-Type": {Sign: &SignConfig{Scheme: "hmac-sha256", Secrets: []string{"s"}, Header: "content-type"}},
		"header replaced by signature": {Headers: http.Header{"X-Signature": {"mine"}},
			Sign: &SignConfig{Scheme: "hmac-sha256", Secrets: []string{"s"}}},
	} {
		rc.URL, rc.Topics = "https://x.example/", []string{"*"}
		if _, err := compileRoute("r", rc); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
	ok := &Route{URL: "https://x.example/", Topics: []string{"*"}, Headers: http.Header{"X-A": {"tab\there"}},
		Sign: &SignConfig{Scheme: "hmac-sha256", Secrets: []string{"s"}, Header: "X-Hub-Signature-256"}}
	if _, err := compileRoute("r", ok); err != nil {
		t.Errorf("tab in a header, signature in its own header: %v", err)
	}
}

type captured struct {
	method string
	path   string
	header http.Header
	body   []byte
}

func TestAttemptRequest(t *testing.T) {
	t.Setenv("HG_TEST_TOKEN", "tok-123")
	t.Setenv("HG_TEST_REGION", "eu")
	var got []captured
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, captured{r.Method, r.URL.RequestURI(), r.Header.Clone(), b})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	r := testRoute(t, &Route{
		URL: srv.URL + "/api/deliveries?x=1",
		Headers: http.Header{
			"Authorization": {"Bearer {env.HG_TEST_TOKEN}"},
			"X-Multi":       {"one", "two {env.HG_TEST_REGION}", "three"},
			"x-source":      {"hookgate"},
		},
	})
	s := newSender()
	for _, now := range []time.Time{time.Now(), time.Unix(1790000000, 0)} {
		j := testJob(now)
		res := s.attempt(context.Background(), r, j, now)
		if !res.ok() || res.status != 204 || res.class != "" || res.err != "" {
			t.Fatalf("result %+v, want 204 ok", res)
		}
		if !res.start.Equal(now) {
			t.Errorf("start %v, want the injected now %v", res.start, now)
		}
		mu.Lock()
		c := got[len(got)-1]
		mu.Unlock()
		if c.method != http.MethodPost || c.path != "/api/deliveries?x=1" {
			t.Errorf("request %s %s", c.method, c.path)
		}
		want := map[string][]string{
			"Webhook-Id":        {"evt_01J"},
			"Webhook-Timestamp": {strconv.FormatInt(now.Unix(), 10)},
			"User-Agent":        {"hookgate/" + Version},
			"Content-Type":      {"application/json"},
			"Authorization":     {"Bearer tok-123"},
			"X-Multi":           {"one", "two eu", "three"},
			"X-Source":          {"hookgate"},
			"Content-Length":    {strconv.Itoa(len(envelope(j.ev)))},
		}
		for k, v := range want {
			if g := c.header.Values(k); strings.Join(g, "\x00") != strings.Join(v, "\x00") {
				t.Errorf("header %s = %q, want %q", k, g, v)
			}
		}
		if ts, _ := strconv.ParseInt(c.header.Get("webhook-timestamp"), 10, 64); ts != now.Unix() {
			t.Errorf("webhook-timestamp %d, want the injected now %d", ts, now.Unix())
		}
		if !bytes.Equal(c.body, envelope(j.ev)) {
			t.Errorf("body\n %s\nwant\n %s", c.body, envelope(j.ev))
		}
		wantBody := `{"id":"evt_01J","type":"task.finished","timestamp":"2026-11-23T10:00:00Z","data":{"task_id": "T-1", "note": "caf\u00e9 é", "n": [1, 2.50]}}`
		if string(c.body) != wantBody {
			t.Errorf("body %s, want %s", c.body, wantBody)
		}
		if u := "hookgate/" + Version; u != "hookgate/0.1.0" {
			t.Errorf("user agent %s", u)
		}
	}
	// The wall-clock attempt carries a timestamp within a few seconds of now.
	mu.Lock()
	first := got[0].header.Get("Webhook-Timestamp")
	mu.Unlock()
	if ts, _ := strconv.ParseInt(first, 10, 64); time.Since(time.Unix(ts, 0)).Abs() > 5*time.Second {
		t.Errorf("webhook-timestamp %s is not within 5s of now", first)
	}
}

// An attempt's duration is how long it took, whatever clock the engine
// injects as now (the dispatcher records Attempt.Duration and
// Done = start + dur from it).
func TestAttemptDurationWithInjectedClock(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
	}))
	defer srv.Close()
	r := testRoute(t, &Route{URL: srv.URL})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	res := newSender().attempt(context.Background(), r, testJob(now), now)
	if !res.ok() {
		t.Fatalf("result %+v", res)
	}
	if res.dur < 0 || res.dur > 5*time.Second {
		t.Errorf("BUG: attempt with injected now %v took %v by res.dur: deliver.go computes dur as time.Since(now), mixing the injected clock with the wall clock", now, res.dur)
	}
}

func TestAttemptResponseBodyKept(t *testing.T) {
	big := make([]byte, 10000)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	small := []byte(`{"ok":true}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.WriteHeader(200)
			w.Write(big)
		case "/small":
			w.WriteHeader(500)
			w.Write(small)
		case "/exact":
			w.WriteHeader(400)
			w.Write(big[:4096])
		}
	}))
	defer srv.Close()
	s := newSender()
	tests := []struct {
		path   string
		status int
		class  string
		body   []byte
	}{
		// One byte past what is shown: it says the body went on.
		{"/big", 200, "", big[:4097]},
		{"/small", 500, classHTTP5xx, small},
		{"/exact", 400, classHTTP4xx, big[:4096]},
	}
	for _, tc := range tests {
		r := testRoute(t, &Route{URL: srv.URL + tc.path})
		res := s.attempt(context.Background(), r, testJob(time.Now()), time.Now())
		if res.status != tc.status || res.class != tc.class {
			t.Errorf("%s: status %d class %q, want %d %q", tc.path, res.status, res.class, tc.status, tc.class)
		}
		if !bytes.Equal(res.body, tc.body) {
			t.Errorf("%s: kept %d bytes (%.20q…), want %d", tc.path, len(res.body), res.body, len(tc.body))
		}
	}
	if responseKeep != 4096 {
		t.Errorf("responseKeep = %d, want 4 KiB", responseKeep)
	}
}

func TestAttemptRedirectNotFollowed(t *testing.T) {
	var finalHits atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/start", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/final", http.StatusFound)
	})
	mux.HandleFunc("/start307", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/final", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/final", func(w http.ResponseWriter, r *http.Request) {
		finalHits.Add(1)
		w.WriteHeader(200)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	s := newSender()
	for _, p := range []struct {
		path   string
		status int
	}{{"/start", 302}, {"/start307", 307}} {
		r := testRoute(t, &Route{URL: srv.URL + p.path})
		res := s.attempt(context.Background(), r, testJob(time.Now()), time.Now())
		if res.status != p.status || res.class != classHTTP3xx || res.retry || res.ok() {
			t.Errorf("%s: status %d class %q retry %v; want %d http_3xx, no retry", p.path, res.status, res.class, res.retry, p.status)
		}
	}
	if n := finalHits.Load(); n != 0 {
		t.Errorf("redirect followed: /final hit %d times", n)
	}
}

func TestAttemptRetryAfterFromServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/429":
			w.Header().Set("Retry-After", "90")
			w.WriteHeader(429)
		case "/410":
			w.Header().Set("Retry-After", "90")
			w.WriteHeader(410)
		}
	}))
	defer srv.Close()
	s := newSender()
	res := s.attempt(context.Background(), testRoute(t, &Route{URL: srv.URL + "/429"}), testJob(time.Now()), time.Now())
	if res.status != 429 || res.class != classHTTP429 || !res.retry || res.retryAfter != 90*time.Second {
		t.Errorf("429: %+v", res)
	}
	res = s.attempt(context.Background(), testRoute(t, &Route{URL: srv.URL + "/410"}), testJob(time.Now()), time.Now())
	if res.status != 410 || res.class != classHTTP4xx || res.retry || !res.gone || res.retryAfter != 0 {
		t.Errorf("410: %+v", res)
	}
}

// A route header that names one of the fixed single-valued headers must
// not produce a second value of it (RFC 9110: Content-Type is a singleton
// field): either the config is rejected or the receiver sees one value.
func TestAttemptRouteHeaderDoesNotDuplicateFixedHeaders(t *testing.T) {
	var mu sync.Mutex
	var seen http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		w.WriteHeader(204)
	}))
	defer srv.Close()
	for _, name := range []string{"Content-Type", "User-Agent"} {
		r, err := compileRoute("test", &Route{Topics: []string{"*"}, URL: srv.URL,
			Headers: http.Header{name: {"custom/1"}}})
		if err != nil {
			continue // rejected at config load: fine
		}
		res := newSender().attempt(context.Background(), r, testJob(time.Now()), time.Now())
		if !res.ok() {
			t.Fatalf("%s: %+v", name, res)
		}
		mu.Lock()
		vs := seen.Values(name)
		mu.Unlock()
		if len(vs) != 1 {
			t.Errorf("BUG: route header %s: the receiver got %d values %q; want exactly one (deliver.go adds route headers with Header.Add after setting the fixed ones)", name, len(vs), vs)
		}
	}
}

func TestEnvelope(t *testing.T) {
	data := `{"b" :  [1, 2.50 ,3e2],  "s":"\u00e9 \"q\"", "u":"é"}`
	tests := []struct {
		name string
		ev   *persist.Event
		want string
	}{
		{
			name: "object data, UTC",
			ev: &persist.Event{ID: "evt_01", Type: "task.finished", Data: []byte(data),
				Time: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)},
			want: `{"id":"evt_01","type":"task.finished","timestamp":"2026-11-23T10:00:00Z","data":` + data + `}`,
		},
		{
			name: "offset time is written in UTC, fraction kept",
			ev: &persist.Event{ID: "x:1", Type: "a/b", Data: []byte(`null`),
				Time: time.Date(2026, 11, 23, 11, 0, 0, 250_000_000, time.FixedZone("CET", 3600))},
			want: `{"id":"x:1","type":"a/b","timestamp":"2026-11-23T10:00:00.25Z","data":null}`,
		},
		{
			name: "string data",
			ev: &persist.Event{ID: "i", Type: "t", Data: []byte(`"line\nnext"`),
				Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)},
			want: `{"id":"i","type":"t","timestamp":"2026-01-02T03:04:05.000000006Z","data":"line\nnext"}`,
		},
		{
			name: "inbound text: its content type goes along",
			ev: &persist.Event{ID: "i", Type: "t", Data: []byte(`"hello"`), ContentType: "text/plain; charset=\"utf-8\"",
				Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
			want: `{"id":"i","type":"t","timestamp":"2026-01-02T03:04:05Z","datacontenttype":"text/plain; charset=\"utf-8\"","data":"hello"}`,
		},
		{
			name: "inbound bytes",
			ev: &persist.Event{ID: "i", Type: "t", Data: []byte{0xff, 0x00}, DataBase64: true, ContentType: "application/octet-stream",
				Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
			want: `{"id":"i","type":"t","timestamp":"2026-01-02T03:04:05Z","datacontenttype":"application/octet-stream","data_base64":"/wA="}`,
		},
	}
	for _, tc := range tests {
		got := envelope(tc.ev)
		if string(got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: envelope is not valid JSON: %s", tc.name, got)
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(got, &m); err != nil {
			t.Fatal(err)
		}
		want := 4
		if tc.ev.ContentType != "" {
			want = 5
			var ct string
			if json.Unmarshal(m["datacontenttype"], &ct); ct != tc.ev.ContentType {
				t.Errorf("%s: datacontenttype %q, want %q", tc.name, ct, tc.ev.ContentType)
			}
		}
		if len(m) != want {
			t.Errorf("%s: %d fields, want id, type, timestamp, data (and datacontenttype with a content type)", tc.name, len(m))
		}
		var id, typ, stamp string
		json.Unmarshal(m["id"], &id)
		json.Unmarshal(m["type"], &typ)
		json.Unmarshal(m["timestamp"], &stamp)
		if id != tc.ev.ID || typ != tc.ev.Type {
			t.Errorf("%s: id %q type %q", tc.name, id, typ)
		}
		if st, err := time.Parse(time.RFC3339Nano, stamp); err != nil || !st.Equal(tc.ev.Time) {
			t.Errorf("%s: timestamp %q does not read back as %v (%v)", tc.name, stamp, tc.ev.Time, err)
		}
		if tc.ev.DataBase64 {
			if b, err := base64.StdEncoding.DecodeString(strings.Trim(string(m["data_base64"]), `"`)); err != nil || string(b) != string(tc.ev.Data) {
				t.Errorf("%s: data_base64 %s does not decode to the data", tc.name, m["data_base64"])
			}
		} else if string(m["data"]) != string(tc.ev.Data) {
			t.Errorf("%s: data %s, want %s", tc.name, m["data"], tc.ev.Data)
		}
	}
}
