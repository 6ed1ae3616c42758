package ingest

import "github.com/caddyserver/caddy/v2"

// VerifyConfig checks signatures on inbound webhooks. A request that
// fails is answered 401 and nothing is stored.
type VerifyConfig struct {
	// Scheme is "standard" (Standard Webhooks: webhook-id,
	// webhook-timestamp and webhook-signature headers), "hmac-sha256"
	// (a plain HMAC of the body in Header, GitHub style), "stripe"
	// (Stripe-Signature: t=…,v1=… over "t.body") or "slack"
	// (X-Slack-Signature: v0=… over "v0:timestamp:body", with the
	// timestamp in X-Slack-Request-Timestamp; Slack's url_verification
	// handshake is answered with its challenge, not stored).
	Scheme string `json:"scheme,omitempty"`

	// Secrets that may have signed the request; any one passing is enough.
	Secrets []string `json:"secrets,omitempty"`

	// Header, Encoding and Prefix describe hmac-sha256 signatures: the
	// header (default X-Hub-Signature-256), hex (default) or base64, and a
	// prefix such as "sha256=".
	Header   string `json:"header,omitempty"`
	Encoding string `json:"encoding,omitempty"`
	Prefix   string `json:"prefix,omitempty"`

	// Tolerance is how far the signed timestamp of a standard, stripe or
	// slack signature may be from now, either way. Default: 5m.
	Tolerance caddy.Duration `json:"tolerance,omitempty"`
}

// Auth guards an ingest endpoint. A request passes when it carries
// any one of the accepted credentials.
type Auth struct {
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
