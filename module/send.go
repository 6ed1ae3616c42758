package module

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/hookgate/hookgate/persist"
)

// Test sends: one event through a route's real request path (URL
// template, headers, transform, signing, egress policy and timeout),
// answered with what the endpoint said. Nothing is stored, nothing is
// retried, and the route's breaker, counters and metrics do not see it.

// testHeader flags a test send's request, so an endpoint can tell it
// from a real event; its id starts with testIDPrefix too.
const (
	testHeader   = "Webhook-Test"
	testIDPrefix = "test_"
)

// defaultSampleType is the type of a test event for a route whose topics
// all have wildcards and that names no sample_event.
const defaultSampleType = "hookgate.test"

// defaultSampleData is the data of a test event when none is given.
var defaultSampleData = json.RawMessage(`{"test":true}`)

// SendResult is what a test send came to.
type SendResult struct {
	Route     string `json:"route"`
	EventID   string `json:"event"` // test_…
	EventType string `json:"type"`
	// Status is the endpoint's HTTP status; 0 when none came.
	Status int `json:"status,omitempty"`
	// Headers are the response's headers.
	Headers http.Header `json:"headers,omitempty"`
	// Body is the first 4 KiB of the response body: text when it is
	// UTF-8, else base64 with BodyEncoding "base64".
	Body         string `json:"body,omitempty"`
	BodyEncoding string `json:"body_encoding,omitempty"`
	// BodyTruncated says the body was longer than what Body shows.
	BodyTruncated bool    `json:"body_truncated,omitempty"`
	DurationMS    float64 `json:"duration_ms"`
	// Class is the failure class (as in attempt histories: timeout,
	// connect, http_5xx, …); empty when the endpoint answered 2xx.
	Class string `json:"class,omitempty"`
	// Error says what failed, with any URL cut to scheme and host.
	Error string `json:"error,omitempty"`
}

// sampleFor returns the test event of a route config: its sample_event,
// with the defaults filled in.
func sampleFor(rc *Route) SampleEvent {
	var s SampleEvent
	if rc.SampleEvent != nil {
		s = *rc.SampleEvent
	}
	if s.Type == "" {
		s.Type = defaultSampleType
		for _, t := range rc.Topics {
			if !strings.Contains(t, "*") {
				s.Type = t
				break
			}
		}
	}
	if len(s.Data) == 0 {
		s.Data = defaultSampleData
	}
	return s
}

// Send makes one test delivery of ev on the named route of the current
// config and returns the endpoint's answer. ev may be nil, and its Type
// and Data empty: the route's sample event fills them in. Send sets
// ev.ID to a fresh test_… id, ev.Received to now and ev.Time to now if
// unset; the request carries `webhook-test: true`.
//
// The request goes exactly as a delivery's would, bounded by the route's
// timeout, whatever the route's state (paused, disabled, circuit open).
// Nothing is stored or retried, and the route's breaker, counters and
// metrics are untouched. A failed attempt is a SendResult with Class
// set, not an error; errors are ErrNotRunning, ErrUnknownRoute (not in
// the current config) and ctx's own.
func (e *Engine) Send(ctx context.Context, route string, ev *persist.Event) (SendResult, error) {
	cfg := e.cfg.Load()
	if cfg == nil {
		return SendResult{}, ErrNotRunning
	}
	r := cfg.routes[route]
	if r == nil {
		return SendResult{}, ErrUnknownRoute
	}
	if err := ctx.Err(); err != nil {
		return SendResult{}, err
	}
	now := e.now()
	if ev == nil {
		ev = new(persist.Event)
	}
	if ev.Type == "" {
		ev.Type = r.sample.Type
	}
	if len(ev.Data) == 0 {
		ev.Data = r.sample.Data
	}
	ev.ID = newID(testIDPrefix, now)
	ev.Received = now
	if ev.Time.IsZero() {
		ev.Time = now
	}
	res := e.sender.attempt(ctx, r, &job{ev: ev, test: true}, now)
	out := SendResult{
		Route:      route,
		EventID:    ev.ID,
		EventType:  ev.Type,
		Status:     res.status,
		Headers:    res.header,
		DurationMS: float64(res.dur.Microseconds()) / 1000,
		Class:      res.class,
		Error:      RedactURLs(res.err),
	}
	out.Body, out.BodyEncoding, out.BodyTruncated = responseText(res.body)
	return out, nil
}
