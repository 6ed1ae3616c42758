package module

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/hashicorp/go-retryablehttp"
	"go.opentelemetry.io/otel/propagation"
	"golang.org/x/net/http/httpguts"

	"github.com/hookgate/hookgate/module/egress"
	"github.com/hookgate/hookgate/module/rules"
	"github.com/hookgate/hookgate/persist"
)

const userAgent = "hookgate/" + Version

// responseKeep is how much of a response body an attempt shows; the
// record keeps one byte more, which says that the body went on
// (responseText).
const responseKeep = 4 << 10

// Failure classes (SPEC §2). Every failed attempt gets exactly one; logs,
// metrics and the admin API use the same names.
const (
	classDNS          = "dns"
	classConnect      = "connect"
	classTLS          = "tls"
	classTimeout      = "timeout"
	classHTTP3xx      = "http_3xx"
	classHTTP429      = "http_429"
	classHTTP4xx      = "http_4xx"
	classHTTP5xx      = "http_5xx"
	classEgressDenied = "egress_denied"
	classBadURL       = "bad_url"
	// classInvalidRequest: a request the HTTP client refuses to send (a
	// header value from event data with CR, LF or NUL, say). Final, and
	// breaker-neutral: it says nothing about the endpoint.
	classInvalidRequest = "invalid_request"
)

// result is what one attempt came to.
type result struct {
	status     int
	class      string // empty on success
	retry      bool   // worth another attempt
	retryAfter time.Duration
	err        string
	body       []byte
	header     http.Header // the response's headers (test sends show them)
	start      time.Time
	dur        time.Duration
	gone       bool // 410: the route pauses
}

func (r result) ok() bool { return r.class == "" }

// sender sends attempts. Clients are go-retryablehttp's, set up for
// exactly one try per call (retries across minutes and hours live in the
// outbox, never in a sleeping goroutine); attempts send through doOnce,
// which does what their Do does with that setup, without its wrappers.
type sender struct {
	client *retryablehttp.Client
}

// newClient wraps an http.Client for single-try use. Attempts send
// through doOnce, which does what Do does with exactly these settings.
func newClient(hc *http.Client) *retryablehttp.Client {
	return &retryablehttp.Client{
		HTTPClient:   hc,
		RetryMax:     0,
		CheckRetry:   func(context.Context, *http.Response, error) (bool, error) { return false, nil },
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
}

// noRedirects makes a client return 3xx responses as they are.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// newSender makes the sender for routes without an egress client of their
// own (provisioned routes always have one; unit tests use this).
// Redirects are not followed unless an egress policy says so.
func newSender() *sender {
	tr := egress.NewTransport((&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext, nil)
	return &sender{client: newClient(egress.NewHTTPClient(tr, noRedirects))}
}

// envelope is the body endpoints receive: {"id","type","timestamp","data"}.
// It is assembled from the stored bytes; data is never re-encoded. Raw
// bytes that are not UTF-8 go as "data_base64" instead (the CloudEvents
// JSON convention), so they arrive exactly as they were sent.
func envelope(ev *persist.Event) []byte {
	n := len(ev.Data)
	if ev.DataBase64 {
		n = base64.StdEncoding.EncodedLen(n) + 16
	}
	b := make([]byte, 0, n+len(ev.ID)+len(ev.Type)+80)
	b = append(b, `{"id":`...)
	b = AppendQuoted(b, ev.ID)
	b = append(b, `,"type":`...)
	b = AppendQuoted(b, ev.Type)
	b = append(b, `,"timestamp":"`...)
	b = ev.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if ev.ContentType != "" {
		// An inbound body that was not JSON: its content type, under
		// CloudEvents' name, so that a receiver can tell the text
		// "hello" from the JSON string "hello".
		ct, _ := json.Marshal(ev.ContentType)
		b = append(b, `,"datacontenttype":`...)
		b = append(b, ct...)
	}
	if ev.DataBase64 {
		b = append(b, `,"data_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, ev.Data)
		return append(b, `"}`...)
	}
	b = append(b, `,"data":`...)
	b = append(b, ev.Data...)
	return append(b, '}')
}

// AppendQuoted is strconv.AppendQuote, quicker for what event ids, types
// and route names are made of: printable ASCII without quote or
// backslash, which it copies as it is. The envelope and the ingest
// handler's answers are built with it.
func AppendQuoted(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return strconv.AppendQuote(b, s)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// globals resolves Caddy's global placeholders ({env.*}, {file.*}, …) in
// templates. A Replacer only reads after construction, so one is shared.
var globals = caddy.NewReplacer()

// attempt makes one delivery attempt of j on route r.
func (s *sender) attempt(ctx context.Context, r *route, j *job, now time.Time) result {
	res := result{start: now}
	var c *rules.Event
	if r.staticURL == "" || r.transform != nil || len(r.headers) > 0 {
		c = rules.NewEvent(j.ev)
	}
	target := r.staticURL
	if target == "" {
		u, err := r.endpointURL(c)
		if err != nil {
			res.class, res.err = classBadURL, err.Error()
			res.retry = errors.Is(err, rules.ErrNoValue)
			return res
		}
		target = u.String()
	}

	body, ctype := envelope(j.ev), "application/json"
	if r.transform != nil {
		var err error
		body, ctype, err = r.transform.Body(c)
		if err != nil {
			res.class, res.err = classBadURL, "transform failed: "+err.Error()
			return res
		}
	}

	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if r.signer != nil && r.client != nil && !r.direct() {
		// A redirect to another host keeps the signature, and only it.
		ctx = egress.KeepOnRedirect(ctx, r.signedIn)
	}
	ctx, connAttempted := traceConnAttempt(ctx)
	req, err := newPost(ctx, target, body)
	if err != nil {
		res.class, res.err = classBadURL, "cannot build the request"
		return res
	}
	h := req.Header
	ts := now.Unix()
	// One backing array for the fixed headers' values; each value is
	// capped at its length, so adding to one never writes into another.
	vals := [...]string{ctype, userAgent, j.ev.ID, strconv.FormatInt(ts, 10), "true"}
	fixed := vals[:]
	h["Content-Type"] = fixed[0:1:1]
	h["User-Agent"] = fixed[1:2:2]
	h["Webhook-Id"] = fixed[2:3:3]
	h["Webhook-Timestamp"] = fixed[3:4:4]
	if j.test {
		h[testHeader] = fixed[4:5:5]
	}
	if r.signer != nil {
		r.signer.Sign(h, j.ev.ID, ts, body)
	}
	if !r.noTraceParent {
		propagator.Inject(ctx, propagation.HeaderCarrier(h))
	}
	for i, ht := range r.headers {
		v, err := ht.value.Expand(c, globals)
		if err != nil {
			// A header that cannot be filled would send a wrong request.
			res.class, res.err = classBadURL, "header "+ht.name+": "+err.Error()
			res.retry = errors.Is(err, rules.ErrNoValue)
			return res
		}
		if ht.name == "User-Agent" && (i == 0 || r.headers[i-1].name != "User-Agent") {
			// A route may replace the default User-Agent.
			h.Del("User-Agent")
		}
		h.Add(ht.name, v)
	}
	if msg := invalidHeader(h); msg != "" {
		// Go's client would refuse it too, but only as an error that
		// looks like a failed connection.
		res.class, res.err = classInvalidRequest, msg
		return res
	}

	// The engine's default client never follows redirects.
	client, direct := s.client, true
	if r.client != nil {
		client, direct = r.client, r.direct()
	}
	// Durations come from the monotonic wall clock; now may be injected.
	sent := time.Now()
	resp, err := doOnce(client, req, direct)
	res.dur = time.Since(sent)
	if err != nil {
		res.class, res.retry = classifyError(err, connAttempted.Load())
		res.err = redactedError(err)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		return res
	}
	defer resp.Body.Close()
	res.status = resp.StatusCode
	res.header = resp.Header
	if resp.ContentLength == 0 {
		// Nothing to read or drain (the body is http.NoBody).
		res.body = noBody
	} else {
		res.body, _ = io.ReadAll(io.LimitReader(resp.Body, responseKeep+1))
		// Drain a little more so the connection can be reused.
		_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	}
	classifyStatus(&res, resp.Header.Get("Retry-After"), now)
	return res
}

// noBody is the kept response of an answer without a body: empty, as
// io.ReadAll returns it.
var noBody = []byte{}

// newPost makes an attempt's request as go-retryablehttp's
// NewRequestWithContext does for a []byte body: the body is rewindable
// (GetBody), so the transport can retry it on a reused connection that
// turned out closed, and a redirect policy can follow 307 and 308.
func newPost(ctx context.Context, target string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, nil)
	if err != nil {
		return nil, err
	}
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.Body = io.NopCloser(bytes.NewReader(body))
	return req, nil
}

// doOnce sends req once with c's HTTP client: what c.Do does with
// newClient's settings (one try, no retry check, no logger or hooks,
// errors passed through, and CloseIdleConnections after a failure),
// without its request wrapper and body closures. TestNewClientIsSingleTry
// holds newClient to those settings. direct says that the client never
// follows redirects: the request then goes through sendDirect.
func doOnce(c *retryablehttp.Client, req *http.Request, direct bool) (*http.Response, error) {
	hc := c.HTTPClient
	var (
		resp *http.Response
		err  error
	)
	if direct && hc.Transport != nil && hc.Jar == nil && hc.Timeout == 0 {
		resp, err = sendDirect(hc.Transport, req)
	} else {
		resp, err = hc.Do(req)
	}
	if err != nil {
		hc.CloseIdleConnections()
	}
	return resp, err
}

// classifyStatus sets the class and retry decision for an HTTP status.
func classifyStatus(res *result, retryAfter string, now time.Time) {
	code := res.status
	switch {
	case code >= 200 && code < 300:
		return
	case code >= 300 && code < 400:
		res.class = classHTTP3xx
	case code == http.StatusTooManyRequests:
		res.class, res.retry = classHTTP429, true
	case code == http.StatusRequestTimeout || code == http.StatusTooEarly:
		res.class, res.retry = classHTTP4xx, true
	case code == http.StatusGone:
		res.class, res.gone = classHTTP4xx, true
	case code >= 400 && code < 500:
		res.class = classHTTP4xx
	default:
		res.class, res.retry = classHTTP5xx, true
	}
	res.err = "endpoint answered " + strconv.Itoa(code)
	if res.retry && retryAfter != "" {
		if d, ok := parseRetryAfter(retryAfter, now); ok {
			res.retryAfter = d
		}
	}
}

// invalidHeader returns why h cannot be sent, or "". Values may hold
// secrets or event data, so only the header's name is quoted.
func invalidHeader(h http.Header) string {
	for k, vs := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return "invalid header name " + strconv.Quote(k) + ": the request was not sent"
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return "header " + k + ": the value holds CR, LF, NUL or another control character, which HTTP does not allow; the request was not sent"
			}
		}
	}
	return ""
}

// traceConnAttempt returns a context whose requests record in the flag
// whether the client asked for a connection: errors before that are the
// client refusing the request, not a network failure.
func traceConnAttempt(ctx context.Context) (context.Context, *atomic.Bool) {
	ct := new(connTrace)
	ct.trace.GetConn = ct.getConn
	return httptrace.WithClientTrace(ctx, &ct.trace), &ct.attempted
}

// connTrace is traceConnAttempt's flag and trace, in one allocation.
type connTrace struct {
	attempted atomic.Bool
	trace     httptrace.ClientTrace
}

func (ct *connTrace) getConn(string) { ct.attempted.Store(true) }

// classifyError maps a transport error to its failure class.
// connAttempted says whether the client got as far as asking for a
// connection (httptrace's GetConn). The network classes need a network
// cause in err (DNS, syscall, TLS and timeout errors, an EOF from the
// peer) or, failing one, a connection attempt: what fails after it (a
// proxy's refusal, a malformed answer) is the endpoint's side. An error
// with neither was raised by the client before any dialling, is not
// worth a retry and says nothing about the endpoint: invalid_request.
func classifyError(err error, connAttempted bool) (class string, retry bool) {
	var (
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		uaErr   x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
		recErr  tls.RecordHeaderError
		alert   tls.AlertError
		egErr   *egress.DeniedError
		urlErr  *url.Error
		opErr   *net.OpError
		errno   syscall.Errno
	)
	switch {
	case errors.As(err, &egErr):
		return classEgressDenied, false
	case errors.As(err, &dnsErr):
		return classDNS, true
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return classTimeout, true
	case errors.As(err, &certErr), errors.As(err, &uaErr), errors.As(err, &hostErr),
		errors.Is(err, http.ErrSchemeMismatch),
		errors.As(err, &invErr), errors.As(err, &recErr), errors.As(err, &alert),
		// crypto/tls reports an alert from the peer (a server that wants a
		// client certificate, a handshake failure) as an OpError "remote
		// error" around an unexported type: it must not fall to connect.
		errors.As(err, &opErr) && opErr.Op == "remote error":
		return classTLS, true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.As(err, &opErr), errors.As(err, &errno):
		return classConnect, true
	case errors.As(err, &urlErr) && strings.Contains(urlErr.Err.Error(), "unsupported protocol scheme"):
		return classBadURL, false
	case !connAttempted:
		return classInvalidRequest, false
	case strings.Contains(err.Error(), "tls: "):
		return classTLS, true
	}
	return classConnect, true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// redactedError is err's text without the request URL, which Go's client
// quotes in full: a URL may carry a token (Slack-style hooks, query
// keys), and attempt errors reach logs and the admin API. Only the
// scheme and host are kept.
func redactedError(err error) string {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err.Error()
	}
	where := "the endpoint"
	if u, perr := url.Parse(ue.URL); perr == nil && u.Host != "" {
		where = u.Scheme + "://" + u.Host + "/…"
	}
	return ue.Op + " " + where + ": " + ue.Err.Error()
}
