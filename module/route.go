package module

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/hookgate/hookgate/module/egress"
	"github.com/hookgate/hookgate/module/rules"
	"github.com/hookgate/hookgate/module/signing"
	"github.com/hookgate/hookgate/persist"
)

// Route defaults; see the field docs in config.go.
const (
	defaultTimeout     = 15 * time.Second
	defaultConcurrency = 16
	defaultBackoffMin  = 5 * time.Second
	defaultBackoffMax  = time.Hour
	jitter             = 0.2
)

// defaultSchedule is the delay before each retry when a route sets none:
// ten attempts over about three days.
var defaultSchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
	5 * time.Hour, 10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour,
}

// route is a Route compiled for the delivery path: everything a worker
// needs is parsed once, at config load.
type route struct {
	name        string
	description string
	topics      []rules.Topic
	url         *rules.Template
	// staticURL is the endpoint URL as requests carry it, when the
	// template has no placeholders and makes an absolute http(s) URL:
	// worked out once instead of for every attempt. Empty otherwise.
	staticURL string
	headers   []headerTmpl
	when      *rules.Rule      // nil: every event of the topics
	transform *rules.Transform // nil: the standard envelope
	signer    signing.Signer   // nil: unsigned
	signedIn  string           // the header signer writes
	// noTraceParent keeps the W3C trace headers out of requests.
	noTraceParent bool
	timeout       time.Duration
	concurrency   int
	retry         retryPolicy
	// client sends this route's attempts (its egress policy's client);
	// nil uses the engine's default.
	client *retryablehttp.Client
	// egress is the policy client sends under; nil with client.
	egress *egress.Client

	// Operating settings: breaker.go, ratelimit.go, ordered.go,
	// verifyendpoint.go.
	breaker breakerConfig
	rate    *rateSpec       // nil: no limit
	order   *rules.OrderKey // nil: unordered
	// rawURL is the URL template as configured; verify_endpoint checks
	// the endpoint again when it changes.
	rawURL   string
	verify   bool
	disabled bool

	// sample is the event a test send uses when given none.
	sample SampleEvent

	// ruleLog and orderLog hold back repeated warnings about a rule or an
	// order key that cannot be evaluated.
	ruleLog, orderLog logLimit
}

type headerTmpl struct {
	name  string
	value *rules.Template
}

// logLimit lets a warning through at most once a minute.
type logLimit struct {
	last atomic.Int64 // unix ns of the last warning let through
}

// allow reports whether a warning may be logged now.
func (l *logLimit) allow(now time.Time) bool {
	last := l.last.Load()
	if now.UnixNano()-last < int64(time.Minute) {
		return false
	}
	return l.last.CompareAndSwap(last, now.UnixNano())
}

// ValidRouteName checks a route or egress policy name: 1–64 characters
// of A-Z a-z 0-9 _ - . (names appear in metrics labels, admin URLs and
// outbox keys).
func ValidRouteName(s string) error {
	if !validRouteName(s) {
		return fmt.Errorf("invalid name %q: expected 1 to 64 characters of A-Z a-z 0-9 _ - .", s)
	}
	return nil
}

// validRouteName reports whether s is 1–64 characters of A-Z a-z 0-9 _ - .
func validRouteName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// direct reports whether the route's client never follows redirects:
// attempts then go to its transport as its http.Client would send them
// (sendDirect).
func (r *route) direct() bool { return r.egress != nil && !r.egress.FollowsRedirects() }

func compileRoute(name string, rc *Route) (*route, error) {
	if err := ValidRouteName(name); err != nil {
		return nil, fmt.Errorf("route: %v", err)
	}
	if rc == nil {
		return nil, fmt.Errorf("route %s: empty definition", name)
	}
	if err := rc.Validate(); err != nil {
		return nil, fmt.Errorf("route %s: %v", name, err)
	}
	r := &route{
		name:        name,
		description: rc.Description,
		timeout:     time.Duration(rc.Timeout),
		concurrency: rc.Concurrency,
	}
	for _, t := range rc.Topics {
		p, err := rules.ParseTopic(t)
		if err != nil {
			return nil, fmt.Errorf("route %s: %v", name, err)
		}
		r.topics = append(r.topics, p)
	}
	ut, err := rules.ParseTemplate(rc.URL, true)
	if err != nil {
		return nil, fmt.Errorf("route %s: url: %v", name, err)
	}
	r.url = ut
	if lit, ok := ut.Literal(); ok {
		if u, err := url.Parse(lit); err == nil && isAbsoluteHTTP(u) {
			r.staticURL = u.String()
		}
	}
	if err := checkURL(rc.URL, ut); err != nil {
		return nil, fmt.Errorf("route %s: %v", name, err)
	}
	if !ut.UsesEvent() {
		// Global placeholders only ({env.SLACK_URL}): what they give now
		// is what every delivery gets, so an unset variable is a config
		// error, not a dead delivery per event.
		if _, err := r.endpointURL(rules.NewEvent(&persist.Event{})); err != nil {
			return nil, fmt.Errorf("route %s: url: with its placeholders filled in, %v (is an environment variable or file it uses missing or empty?)", name, errNotAbsolute)
		}
	}
	names := make([]string, 0, len(rc.Headers))
	for k := range rc.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if _, ok := reservedHeaders[http.CanonicalHeaderKey(k)]; ok {
			return nil, fmt.Errorf("route %s: header %s is set by hookgate and cannot be configured", name, k)
		}
		for _, v := range rc.Headers[k] {
			if err := CheckHeaderValue(v); err != nil {
				return nil, fmt.Errorf("route %s: header %s: %v", name, k, err)
			}
			vt, err := rules.ParseTemplate(v, false)
			if err != nil {
				return nil, fmt.Errorf("route %s: header %s: %v", name, k, err)
			}
			r.headers = append(r.headers, headerTmpl{name: http.CanonicalHeaderKey(k), value: vt})
		}
	}
	if rc.When != "" {
		if r.when, err = rules.CompileRule(name, rc.When); err != nil {
			return nil, err
		}
	}
	if rc.Transform != "" {
		if r.transform, err = rules.CompileTransform(name, rc.Transform, rc.ContentType); err != nil {
			return nil, err
		}
	}
	switch rc.TracePropagation {
	case "", "on":
	case "off":
		r.noTraceParent = true
	default:
		return nil, fmt.Errorf("route %s: trace_propagation is on or off, got %q", name, rc.TracePropagation)
	}
	if rc.Sign != nil {
		secrets, err := ExpandNonEmpty("sign: secret", rc.Sign.Secrets)
		if err != nil {
			return nil, fmt.Errorf("route %s: %v", name, err)
		}
		sg, err := signing.NewSigner(rc.Sign.Scheme, secrets, rc.Sign.Header, rc.Sign.Encoding, rc.Sign.Prefix)
		if err != nil {
			return nil, fmt.Errorf("route %s: %v", name, err)
		}
		r.signer = sg
		hdr := signing.HeaderOf(sg)
		r.signedIn = hdr
		if _, ok := reservedHeaders[hdr]; ok && hdr != "Webhook-Signature" {
			return nil, fmt.Errorf("route %s: sign: header %s is set by hookgate and cannot carry the signature", name, hdr)
		}
		for k := range rc.Headers {
			if http.CanonicalHeaderKey(k) == hdr {
				return nil, fmt.Errorf("route %s: header %s is also where sign puts the signature, which would replace it", name, hdr)
			}
		}
	}
	if r.timeout < 0 {
		return nil, fmt.Errorf("route %s: negative timeout", name)
	}
	if r.timeout == 0 {
		r.timeout = defaultTimeout
	}
	if r.concurrency < 0 {
		return nil, fmt.Errorf("route %s: concurrency must be positive, got %d", name, r.concurrency)
	}
	if r.concurrency == 0 {
		r.concurrency = defaultConcurrency
	}
	rp, err := compileRetry(rc.Retry)
	if err != nil {
		return nil, fmt.Errorf("route %s: %v", name, err)
	}
	r.retry = rp
	if r.breaker, err = compileBreaker(rc.Breaker, rc.BreakerCooldown); err != nil {
		return nil, fmt.Errorf("route %s: %v", name, err)
	}
	if rc.Rate != "" {
		rs, err := parseRate(rc.Rate)
		if err != nil {
			return nil, fmt.Errorf("route %s: %v", name, err)
		}
		r.rate = &rs
	}
	if r.order, err = rules.CompileOrderKey(name, rc.Ordered); err != nil {
		return nil, err
	}
	r.rawURL, r.verify, r.disabled = rc.URL, rc.VerifyEndpoint, rc.Disabled
	r.sample = sampleFor(rc)
	if r.verify && ut.UsesEvent() {
		return nil, fmt.Errorf("route %s: verify_endpoint checks the URL before any event: it cannot hold {event.*} placeholders", name)
	}
	return r, nil
}

// reservedHeaders are set by the delivery itself; a route header with one
// of these names would send two conflicting values.
var reservedHeaders = map[string]struct{}{
	"Content-Type": {}, "Content-Length": {}, "Transfer-Encoding": {}, "Host": {},
	"Webhook-Id": {}, "Webhook-Timestamp": {}, "Webhook-Signature": {}, testHeader: {},
	"Traceparent": {}, "Tracestate": {},
}

// matches reports whether an event type is one of the route's topics.
func (r *route) matches(eventType string) bool {
	for _, p := range r.topics {
		if p.Match(eventType) {
			return true
		}
	}
	return false
}

// retryPolicy is a compiled RetryPolicy: delays[i] is the delay before
// attempt i+2.
type retryPolicy struct {
	delays []time.Duration
	maxAge time.Duration
}

func compileRetry(rp *RetryPolicy) (retryPolicy, error) {
	var p retryPolicy
	if rp == nil {
		rp = &RetryPolicy{}
	}
	switch {
	case rp.Attempts < 0:
		return p, fmt.Errorf("retry: attempts must be positive, got %d", rp.Attempts)
	case rp.BackoffMin < 0 || rp.BackoffMax < 0:
		return p, fmt.Errorf("retry: backoff durations must be positive")
	case len(rp.Schedule) > 0 && (rp.Attempts > 0 || rp.BackoffMin != 0 || rp.BackoffMax != 0):
		return p, fmt.Errorf("retry: use either schedule or attempts with backoff, not both")
	case len(rp.Schedule) > 0:
		for _, d := range rp.Schedule {
			if d <= 0 {
				return p, fmt.Errorf("retry: schedule delays must be positive, got %s", time.Duration(d))
			}
			p.delays = append(p.delays, time.Duration(d))
		}
	case rp.Attempts > 0:
		lo, hi := time.Duration(rp.BackoffMin), time.Duration(rp.BackoffMax)
		if lo <= 0 {
			lo = defaultBackoffMin
		}
		if hi <= 0 {
			hi = max(defaultBackoffMax, lo)
		}
		if lo > hi {
			return p, fmt.Errorf("retry: backoff min %s is above max %s", lo, hi)
		}
		d := lo
		for i := 1; i < rp.Attempts; i++ {
			p.delays = append(p.delays, d)
			d = min(d*2, hi)
		}
	default:
		if rp.BackoffMin != 0 || rp.BackoffMax != 0 {
			return p, fmt.Errorf("retry: backoff needs attempts")
		}
		p.delays = defaultSchedule
	}
	p.maxAge = time.Duration(rp.MaxAge)
	if p.maxAge < 0 {
		return p, fmt.Errorf("retry: negative max_age")
	}
	if p.maxAge == 0 {
		// Long enough for the whole schedule at its longest jitter, so the
		// default never cuts the last attempts (a fixed 72h would cut the
		// default schedule's tenth attempt at about 75h).
		var sum time.Duration
		for _, d := range p.delays {
			sum += d
		}
		p.maxAge = max(72*time.Hour, time.Duration(float64(sum)*(1+jitter))+time.Minute)
	}
	return p, nil
}

// next decides what follows a failed attempt. attempts is how many were
// made in the current schedule (this one included), began when that
// schedule began (the delivery's creation, or its last requeue; see
// nextFor), retryAfter the server's Retry-After (0 when none), rnd a
// number in [0, 1). It returns the due time of the next attempt, or
// ok=false when the delivery is dead.
func (p retryPolicy) next(attempts int, began, now time.Time, retryAfter time.Duration, rnd float64) (time.Time, bool) {
	if attempts < 1 || attempts > len(p.delays) {
		return time.Time{}, false
	}
	base := p.delays[attempts-1]
	delay := time.Duration(float64(base) * (1 - jitter + 2*jitter*rnd))
	deadline := began.Add(p.maxAge)
	if retryAfter > delay && !now.Add(retryAfter).After(deadline) {
		delay = retryAfter
	}
	due := now.Add(delay)
	if due.After(deadline) {
		return time.Time{}, false
	}
	return due, true
}

// nextFor is next for delivery d, whose Attempts include the attempt
// that just failed at now. The schedule and max_age count from where d's
// current schedule began: its creation, or its last requeue from dead or
// delivered (a retry or replay), which starts the schedule afresh.
func (p retryPolicy) nextFor(d *persist.Delivery, now time.Time, retryAfter time.Duration, rnd float64) (time.Time, bool) {
	began := d.Created
	if !d.ScheduleStart.IsZero() {
		began = d.ScheduleStart
	}
	return p.next(d.Attempts-d.ScheduleBase, began, now, retryAfter, rnd)
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP
// date, relative to now. go-retryablehttp has a parser, but it reads the
// wall clock and only RFC 1123 dates; schedules here run on an injected
// clock.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var secs int64
	isNum := true
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			isNum = false
			break
		}
		secs = secs*10 + int64(v[i]-'0')
		if secs > 1<<31 {
			// Over 68 years: not a delay anyone means.
			return 0, false
		}
	}
	if isNum {
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}

// jitterRand is the jitter source; tests replace it.
var jitterRand = rand.Float64

// errNotAbsolute says what a route's URL must be, without the URL (it may
// hold a secret, a Slack hook say).
var errNotAbsolute = errors.New("expected an absolute http:// or https:// URL")

// CheckURL checks a route's url as configured: one that starts with a
// literal must name its scheme and host there, and one without
// placeholders must be a whole absolute http(s) URL with a valid port.
// One that is all placeholder ({env.SLACK_URL}) is checked once filled in.
func CheckURL(raw string) error {
	ut, err := rules.ParseTemplate(raw, true)
	if err != nil {
		return fmt.Errorf("url: %v", err)
	}
	return checkURL(raw, ut)
}

// checkURL is CheckURL for raw parsed as ut.
func checkURL(raw string, ut *rules.Template) error {
	// The URL is not quoted: it may hold a token (a Slack hook).
	if lit, static := ut.Literal(); static {
		if !absoluteHTTP(lit) {
			return fmt.Errorf("url: %v with a host and, if given, a port in 1-65535", errNotAbsolute)
		}
		return nil
	}
	if !strings.HasPrefix(raw, "{") {
		lit := ut.Prefix()
		if !absoluteHTTP(lit) && !(strings.HasSuffix(lit, "//") && absoluteHTTP(lit+"host")) {
			return fmt.Errorf("url: %v: it must start with its scheme and host", errNotAbsolute)
		}
	}
	return nil
}

// CheckHeaderValue refuses a configured header value holding a control
// character other than tab (CR, LF, NUL, DEL…): Go's client would refuse
// every request carrying it.
func CheckHeaderValue(v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Errorf("the value holds the control character %q (CR, LF and the like cannot be sent)", rune(c))
		}
	}
	return nil
}

// absoluteHTTP reports whether s is an absolute http or https URL.
func absoluteHTTP(s string) bool {
	u, err := url.Parse(s)
	return err == nil && isAbsoluteHTTP(u)
}

func isAbsoluteHTTP(u *url.URL) bool {
	if u.Scheme != "http" && u.Scheme != "https" || u.Hostname() == "" {
		return false
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		return err == nil && n > 0 && n <= 65535
	}
	return true
}

// endpointURL is r's URL for ev: the template expanded and checked.
// Errors name the problem, never the URL.
func (r *route) endpointURL(ev *rules.Event) (*url.URL, error) {
	target, err := r.url.Expand(ev, globals)
	if err != nil {
		return nil, fmt.Errorf("cannot build the endpoint URL: %w", err)
	}
	u, err := url.Parse(target)
	if err != nil || !isAbsoluteHTTP(u) {
		return nil, fmt.Errorf("cannot build the endpoint URL: %v", errNotAbsolute)
	}
	return u, nil
}
