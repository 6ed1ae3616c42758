// Package signing signs outbound webhook deliveries, verifies the
// signatures of inbound webhooks, and provides the `caddy webhooks-key`
// command that creates and inspects the keys both use. It depends on the
// standard library only, apart from registering the command with Caddy.
//
// Signing (NewSigner) knows three schemes:
//
//   - "standard" (or ""): Standard Webhooks symmetric signatures,
//     HMAC-SHA256 of "id.timestamp.body", written as
//     `webhook-signature: v1,<base64>`, one per secret, space-separated, in
//     config order (rotation). A secret of the form whsec_<base64> is
//     base64-decoded; any other string is used as the key bytes as is.
//   - "ed25519": Standard Webhooks asymmetric signatures, ed25519 over the
//     same content, written as `v1a,<base64>`, from whsk_<base64> keys (the
//     base64 holds the 32-byte seed or the 64-byte seed||public private
//     key).
//   - "hmac-sha256": a plain HMAC-SHA256 of the raw body, hex (default) or
//     base64, with an optional prefix such as "sha256=", in one header
//     (default X-Signature). The secret is always used as raw bytes, as
//     GitHub-style receivers do.
//
// Verification (NewVerifier) knows four:
//
//   - "standard": Standard Webhooks. The webhook-id, webhook-timestamp and
//     webhook-signature headers are required; the timestamp must lie within
//     the tolerance (default 5m) of now, in both directions; the request
//     passes when any signature in the space-separated list matches any
//     configured key. Secrets are whsec_<base64> or raw strings (HMAC, v1
//     signatures); a whpk_ public key (or a whsk_ key, whose public half is
//     used) verifies v1a ed25519 signatures.
//   - "hmac-sha256": GitHub style. One header (default X-Hub-Signature-256)
//     holds an optional prefix (e.g. "sha256=") and the hex (default) or
//     base64 HMAC-SHA256 of the raw body; secrets are raw strings. There is
//     no timestamp in this scheme, so tolerance does not apply.
//   - "stripe": Stripe-Signature: t=<unix>,v1=<hex>[,v1=…], the hex
//     HMAC-SHA256 of "<t>.<body>" with the secret as written (whsec_…
//     included); t within the tolerance.
//   - "slack": X-Slack-Signature: v0=<hex>, the HMAC-SHA256 of
//     "v0:<X-Slack-Request-Timestamp>:<body>"; the timestamp within the
//     tolerance.
//
// MACs are compared in constant time (hmac.Equal). Secrets never appear in
// errors or in the formatted form (String, GoString, %v, %#v) of a Signer
// or a Verifier.
//
// The package is a leaf: it never imports the webhooks app. The app imports
// it, which registers `caddy webhooks-key` with Caddy's command line.
package signing
