package module

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
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

	// Egress names the egress policy (App.Egress) this route's deliveries
	// go out under. Default: the policy named "default" if there is one,
	// else the built-in default policy. Naming a policy that is not
	// defined fails the load.
	Egress string `json:"egress,omitempty"`

	// EgressPolicy is a policy for this route alone, instead of a named
	// one (not both).
	EgressPolicy *EgressPolicy `json:"egress_policy,omitempty"`
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

// VerifyConfig checks signatures on inbound webhooks. A request that
// fails is answered 401 and nothing is stored.
type VerifyConfig struct {
	// Scheme is "standard" (Standard Webhooks: webhook-id,
	// webhook-timestamp and webhook-signature headers) or "hmac-sha256"
	// (a plain HMAC of the body in Header, GitHub style).
	Scheme string `json:"scheme,omitempty"`

	// Secrets that may have signed the request; any one passing is enough.
	Secrets []string `json:"secrets,omitempty"`

	// Header, Encoding and Prefix describe hmac-sha256 signatures: the
	// header (default X-Hub-Signature-256), hex (default) or base64, and a
	// prefix such as "sha256=".
	Header   string `json:"header,omitempty"`
	Encoding string `json:"encoding,omitempty"`
	Prefix   string `json:"prefix,omitempty"`

	// Tolerance is how far a Standard Webhooks timestamp may be from now,
	// either way. Default: 5m.
	Tolerance caddy.Duration `json:"tolerance,omitempty"`
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

// IngestAuth guards an ingest endpoint. A request passes when it carries
// any one of the accepted credentials.
type IngestAuth struct {
	// Bearer lists accepted tokens for `Authorization: Bearer <token>`.
	// Placeholders such as {env.INGEST_TOKEN} are expanded at load.
	Bearer []string `json:"bearer,omitempty"`

	// Header lists accepted values of one request header, e.g. an API key
	// header. Placeholders are expanded at load.
	Header *AuthHeader `json:"header,omitempty"`
}

// AuthHeader accepts a request whose header Name has one of Values.
type AuthHeader struct {
	Name   string   `json:"name,omitempty"`
	Values []string `json:"values,omitempty"`
}
