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
}
