package module

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/hookgate/hookgate/module/egress"
)

// Route sends the events whose type matches Topics to one endpoint.
type Route struct {
	// Description is free text for operators; it shows in the admin API.
	Description string `json:"description,omitempty"`

	// Topics are the event types this route takes. A pattern is a dotted
	// type in which `*` matches exactly one segment and `**` any number of
	// segments (zero or more); a lone `*` matches every type. At least one
	// is required.
	Topics []string `json:"topics,omitempty"`

	// URL is the endpoint every matching event is POSTed to. Placeholders
	// are expanded per delivery: Caddy's global ones ({env.*}, {file.*})
	// and {event.id}, {event.type} and {event.data.PATH}; values put into
	// the URL are escaped. Required.
	URL string `json:"url,omitempty"`

	// Headers are added to every request of this route, after the
	// webhook-* headers. Values may hold the same placeholders as URL.
	Headers http.Header `json:"headers,omitempty"`

	// Timeout bounds one attempt, from dialling to the end of the
	// response. Default: 15s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Concurrency is how many attempts of this route may be in flight at
	// once. Default: 16.
	Concurrency int `json:"concurrency,omitempty"`

	// Retry is the retry policy. Default: the schedule 5s 5m 30m 2h 5h
	// 10h 14h 20h 24h (ten attempts, about three days).
	Retry *RetryPolicy `json:"retry,omitempty"`

	// When is a CEL expression over `event` (id, type, source, time,
	// data, headers) that must be true for a matching event to be
	// delivered, e.g. `event.data.priority == "High"`. It is compiled at
	// config load (a syntax or type error, or a result that is not a
	// bool, fails the load) and evaluated at ingest; an evaluation error
	// (such as a missing field) counts as no match.
	When string `json:"when,omitempty"`

	// Transform is a CEL expression over `event` whose result becomes the
	// request body: a map or list is sent as JSON, a string as it is.
	// Signing covers the transformed bytes. Default: the envelope
	// {"id","type","timestamp","data"}.
	Transform string `json:"transform,omitempty"`

	// ContentType is the Content-Type of bodies a Transform returns as a
	// string. Default: text/plain; charset=utf-8. (JSON bodies are always
	// application/json.)
	ContentType string `json:"content_type,omitempty"`

	// Sign adds a signature to every request.
	Sign *SignConfig `json:"sign,omitempty"`

	// TracePropagation "off" keeps traceparent/tracestate out of this
	// route's requests (for receivers that must not see the sender's
	// trace); the attempt's trace id is still recorded. Default: "on".
	TracePropagation string `json:"trace_propagation,omitempty"`

	// Egress names the egress policy (App.Egress) this route's deliveries
	// go out under. Default: the policy named "default" if there is one,
	// else the built-in default policy. Naming a policy that is not
	// defined fails the load.
	Egress string `json:"egress,omitempty"`

	// EgressPolicy is a policy for this route alone, instead of a named
	// one (not both).
	EgressPolicy *egress.Policy `json:"egress_policy,omitempty"`

	// Breaker is how many consecutive failed attempts open the route's
	// circuit. Failures that count are those that are retried (dns,
	// connect, tls, timeout, 408, 425, 429, 5xx); any 2xx closes it again
	// and any other answer from the endpoint resets the count. While the
	// circuit is open nothing is sent and pending deliveries spend no
	// attempts; after a cool-down one probe goes out, and its success
	// closes the circuit while its failure reopens it for twice as long.
	// Default: 10. A negative value (Caddyfile: `breaker off`) turns the
	// breaker off.
	Breaker int `json:"breaker,omitempty"`

	// BreakerCooldown is the first cool-down after the circuit opens; it
	// doubles with each failed probe, up to 60 times this value. Default:
	// 5s (so at most 5m).
	BreakerCooldown caddy.Duration `json:"breaker_cooldown,omitempty"`

	// Rate caps this route's attempts (first tries and retries alike):
	// "N/s" or "N/m", a token bucket shared by the route's workers, with
	// bursts of up to a tenth of a second's worth (at least one).
	// Deliveries wait in the queue for a token without holding a
	// concurrency slot. Default: no limit.
	Rate string `json:"rate,omitempty"`

	// Ordered sends deliveries one at a time per key, in ingest order:
	// "*" orders the whole route, anything else is a CEL expression over
	// `event` that gives the key (a string; numbers and bools are turned
	// into strings), e.g. `event.data.customer_id`. An event whose key
	// cannot be computed (a missing field) is ordered under "*". A
	// delivery that fails holds back the later ones of its key until it
	// is delivered or dead; other keys go on. Default: "" (unordered).
	Ordered string `json:"ordered,omitempty"`

	// VerifyEndpoint makes the route prove that its endpoint wants these
	// deliveries before the first one, and again whenever URL changes: a
	// GET to URL with a random `check` query parameter must be answered
	// 2xx with exactly that value as the body. Until then deliveries
	// wait (state "unverified"); a failed check is retried every 30s.
	// The verified URL is kept in the outbox, so restarts do not check
	// again. URL may then hold no {event.*} placeholders.
	VerifyEndpoint bool `json:"verify_endpoint,omitempty"`

	// Disabled keeps the route matching and queueing events while
	// sending nothing (state "disabled").
	Disabled bool `json:"disabled,omitempty"`

	// SampleEvent is the event `caddy webhooks send` (POST
	// /webhooks/routes/{name}/send) sends when the operator gives none:
	// {"type": ..., "data": ...}. Default: the route's first topic that
	// has no wildcard (else "hookgate.test"), with data {"test": true}.
	SampleEvent *SampleEvent `json:"sample_event,omitempty"`
}

// SampleEvent is a test event for a route.
type SampleEvent struct {
	// Type is the event type. Default: as for an absent SampleEvent.
	Type string `json:"type,omitempty"`
	// Data is the event's payload, a JSON value. Default: {"test": true}.
	Data json.RawMessage `json:"data,omitempty"`
}

// Validate checks that Data, when given, is one JSON value.
func (s *SampleEvent) Validate() error {
	if len(s.Data) > 0 && !json.Valid(s.Data) {
		return errors.New("sample_event: data is not valid JSON")
	}
	return nil
}

// SignConfig signs requests. Secrets are expanded at load (so
// {env.SECRET} and {file./path} work) and never appear in logs, errors or
// the admin API.
type SignConfig struct {
	// Scheme is "standard" (default: Standard Webhooks HMAC-SHA256, one
	// `v1,` signature per secret in webhook-signature), "ed25519"
	// (Standard Webhooks `v1a,` signatures from whsk_ keys) or
	// "hmac-sha256" (a plain HMAC of the body in Header).
	Scheme string `json:"scheme,omitempty"`

	// Secrets are the keys: whsec_ secrets (or raw strings) for standard
	// and hmac-sha256, whsk_ keys for ed25519. Several secrets sign with
	// each, so a receiver can rotate.
	Secrets []string `json:"secrets,omitempty"`

	// Header, Encoding and Prefix shape hmac-sha256 signatures: the header
	// (default X-Signature), hex (default) or base64, and a prefix such as
	// "sha256=".
	Header   string `json:"header,omitempty"`
	Encoding string `json:"encoding,omitempty"`
	Prefix   string `json:"prefix,omitempty"`
}

// RetryPolicy says when failed attempts are tried again. Use either
// Schedule, or Attempts with BackoffMin/BackoffMax; every delay gets ±20%
// jitter. A delivery whose attempts or age run out is dead: kept, listed
// and replayable.
type RetryPolicy struct {
	// Schedule lists the delay before each retry: N delays make N+1
	// attempts.
	Schedule []caddy.Duration `json:"schedule,omitempty"`

	// Attempts is the total number of attempts (first one included) for an
	// exponential backoff that starts at BackoffMin and doubles up to
	// BackoffMax. Defaults when Attempts is set: BackoffMin 5s,
	// BackoffMax 1h.
	Attempts   int            `json:"attempts,omitempty"`
	BackoffMin caddy.Duration `json:"backoff_min,omitempty"`
	BackoffMax caddy.Duration `json:"backoff_max,omitempty"`

	// MaxAge is the age after which a delivery is not retried any more,
	// counted from ingest. Default: 72h. Retry-After is honoured only
	// while it stays within MaxAge.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
}

// Validate checks that a route has what every route needs, before its
// values are compiled: topics, a url, and content_type only with a
// transform (it types transformed string bodies; without one it would be
// silently ignored).
func (rc *Route) Validate() error {
	switch {
	case len(rc.Topics) == 0:
		return errors.New("topics is required: give at least one event type pattern (or * for all)")
	case rc.URL == "":
		return errors.New("url is required")
	case rc.ContentType != "" && rc.Transform == "":
		return errors.New("content_type needs transform: it types transformed string bodies only")
	case rc.SampleEvent != nil:
		return rc.SampleEvent.Validate()
	}
	return nil
}

// ValidRate checks a route's rate: N/s or N/m with N a positive integer.
func ValidRate(s string) error {
	_, err := parseRate(s)
	return err
}
