package signing

import (
	"cmp"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// A Verifier checks the signature of an inbound request. Verify returns nil
// when the request passes, or an error whose text is safe to return to the
// sender: it names what is missing or wrong, never a secret or an expected
// signature. now is the time the timestamp tolerance is measured against.
// A Verifier is safe for concurrent use, and its String and GoString never
// show key material.
type Verifier interface {
	Verify(h http.Header, body []byte, now time.Time) error
}

const defaultTolerance = 5 * time.Minute

// maxSignatures bounds how many entries of a signature header are examined,
// so a request cannot buy unbounded ed25519 work with a long header.
const maxSignatures = 16

// Errors of the standard scheme. Their texts are meant for the sender.
var (
	errMissingWebhookID        = errors.New("missing webhook-id header")
	errMissingWebhookTimestamp = errors.New("missing webhook-timestamp header")
	errMissingWebhookSignature = errors.New("missing webhook-signature header")
	errInvalidWebhookTimestamp = errors.New("invalid webhook-timestamp header: want unix seconds")
	errWebhookTimestampOld     = errors.New("webhook-timestamp is too old")
	errWebhookTimestampNew     = errors.New("webhook-timestamp is too far in the future")
	errNoMatchingSignature     = errors.New("no matching signature")
)

// NewVerifier builds a Verifier for scheme ("standard", "hmac-sha256",
// "stripe" or "slack"; see the package documentation). A request passes
// when any of its signatures matches any of secrets, so senders can rotate
// secrets.
//
// header (default X-Hub-Signature-256), encoding ("hex", the default, or
// "base64") and prefix apply to "hmac-sha256" only; tolerance applies to
// the others and bounds how far the signed timestamp may lie from now, in
// either direction (0 means 5 minutes; negative is an error). Errors never
// quote a secret.
func NewVerifier(scheme string, secrets []string, header, encoding, prefix string, tolerance time.Duration) (Verifier, error) {
	switch scheme {
	case "standard":
		const what = "verify standard"
		tolerance, err := timedOptions(what, secrets, header, encoding, prefix, tolerance)
		if err != nil {
			return nil, err
		}
		v := &standardVerifier{tolerance: tolerance}
		for i, sec := range secrets {
			t := strings.TrimSpace(sec)
			switch {
			case strings.HasPrefix(t, prefixWhpk):
				pub, err := parseWhpk(t)
				if err != nil {
					return nil, fmt.Errorf("%s: secret %d: %w", what, i+1, err)
				}
				v.pubs = append(v.pubs, pub)
			case strings.HasPrefix(t, prefixWhsk):
				priv, err := parseWhsk(t)
				if err != nil {
					return nil, fmt.Errorf("%s: secret %d: %w", what, i+1, err)
				}
				v.pubs = append(v.pubs, priv.Public().(ed25519.PublicKey))
			default:
				key, err := symmetricKey(sec)
				if err != nil {
					return nil, fmt.Errorf("%s: secret %d: %w", what, i+1, err)
				}
				v.keys = append(v.keys, newMacKey(key))
			}
		}
		return v, nil

	case "hmac-sha256":
		const what = "verify hmac-sha256"
		hdr, enc, err := plainOptions(what, header, defaultVerifyHeader, encoding, prefix)
		if err != nil {
			return nil, err
		}
		if len(secrets) == 0 {
			return nil, errors.New(what + ": no secret given")
		}
		v := &plainVerifier{header: hdr, base64: enc == "base64", prefix: prefix}
		for i, sec := range secrets {
			if sec == "" {
				return nil, fmt.Errorf("%s: secret %d: empty", what, i+1)
			}
			v.keys = append(v.keys, newMacKey([]byte(sec)))
		}
		v.errMissing = fmt.Errorf("missing %s header", hdr)
		v.errPrefix = fmt.Errorf("%s header lacks the %q prefix", hdr, prefix)
		v.errMalformed = fmt.Errorf("%s header does not hold a %s HMAC-SHA256", hdr, enc)
		v.errMismatch = fmt.Errorf("%s header: no matching signature", hdr)
		return v, nil

	case "stripe", "slack":
		what := "verify " + scheme
		tolerance, err := timedOptions(what, secrets, header, encoding, prefix, tolerance)
		if err != nil {
			return nil, err
		}
		v := &timestampVerifier{slack: scheme == "slack", tolerance: tolerance}
		for i, sec := range secrets {
			if sec == "" {
				return nil, fmt.Errorf("%s: secret %d: empty", what, i+1)
			}
			// Both sign with the secret as it is written (Stripe's
			// whsec_ prefix included).
			v.keys = append(v.keys, newMacKey([]byte(sec)))
		}
		return v, nil
	}
	// The scheme is not quoted: a misplaced secret must not be echoed.
	return nil, errors.New("verify: unknown scheme (want standard, hmac-sha256, stripe or slack)")
}

// timedOptions checks the options of a scheme that signs a timestamp:
// no hmac-sha256 options, a tolerance not negative (0: the default) and
// at least one secret. It returns the tolerance to use.
func timedOptions(what string, secrets []string, header, encoding, prefix string, tolerance time.Duration) (time.Duration, error) {
	if err := noPlainOptions(what, header, encoding, prefix); err != nil {
		return 0, err
	}
	if tolerance < 0 {
		return 0, errors.New(what + ": negative tolerance")
	}
	if len(secrets) == 0 {
		return 0, errors.New(what + ": no secret given")
	}
	return cmp.Or(tolerance, defaultTolerance), nil
}

// timestampErrors are a scheme's errors for a timestamp that is not unix
// seconds, too old, or too far in the future.
type timestampErrors struct{ invalid, old, future error }

// checkTimestamp parses a signed timestamp and checks that it lies within
// tol of now, either way.
func checkTimestamp(text string, now time.Time, tol time.Duration, e timestampErrors) (int64, error) {
	ts, err := parseUnixSeconds(text)
	if err != nil {
		return 0, e.invalid
	}
	age := now.Sub(time.Unix(ts, 0)) // saturates; no overflow
	if age > tol {
		return 0, e.old
	}
	if age < -tol {
		return 0, e.future
	}
	return ts, nil
}

// SignatureHeader is the request header (canonical) that carries the
// signature a verify scheme checks, with header the hmac-sha256 option;
// "" for standard, whose signature is one of three headers.
func SignatureHeader(scheme, header string) string {
	switch scheme {
	case "stripe":
		return hdrStripeSignature
	case "slack":
		return hdrSlackSignature
	case "hmac-sha256":
		return http.CanonicalHeaderKey(cmp.Or(header, defaultVerifyHeader))
	}
	return ""
}

// Header names of the stripe and slack schemes.
const (
	hdrStripeSignature = "Stripe-Signature"
	hdrSlackTimestamp  = "X-Slack-Request-Timestamp"
	hdrSlackSignature  = "X-Slack-Signature"
)

// Errors of the stripe and slack schemes, for the sender.
var (
	errMissingStripeSignature = errors.New("missing Stripe-Signature header")
	errStripeNoTimestamp      = errors.New("Stripe-Signature header has no t= timestamp")
	errMissingSlackTimestamp  = errors.New("missing X-Slack-Request-Timestamp header")
	errMissingSlackSignature  = errors.New("missing X-Slack-Signature header")
	errInvalidTimestamp       = errors.New("invalid timestamp: want unix seconds")
	errTimestampOld           = errors.New("timestamp is too old")
	errTimestampNew           = errors.New("timestamp is too far in the future")
)

// timestampVerifier checks the two schemes that sign a timestamp and the
// body with HMAC-SHA256, hex-encoded:
//   - stripe: Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...] over
//     "<t>.<body>";
//   - slack: X-Slack-Request-Timestamp: <unix> and X-Slack-Signature:
//     v0=<hex> over "v0:<timestamp>:<body>".
type timestampVerifier struct {
	slack     bool
	keys      []*macKey
	tolerance time.Duration
}

func (v *timestampVerifier) Verify(h http.Header, body []byte, now time.Time) error {
	var (
		tsText string
		sigs   []string // hex
	)
	if v.slack {
		tsText = strings.TrimSpace(h.Get(hdrSlackTimestamp))
		if tsText == "" {
			return errMissingSlackTimestamp
		}
		sig := strings.TrimSpace(h.Get(hdrSlackSignature))
		if sig == "" {
			return errMissingSlackSignature
		}
		if hexSig, ok := strings.CutPrefix(sig, "v0="); ok {
			sigs = append(sigs, hexSig)
		}
	} else {
		vals := h.Values(hdrStripeSignature)
		if !anyNonBlank(vals) {
			return errMissingStripeSignature
		}
		examined := 0
		for _, line := range vals {
			for field := range strings.SplitSeq(line, ",") {
				if examined == 2*maxSignatures {
					break
				}
				examined++
				k, val, _ := strings.Cut(strings.TrimSpace(field), "=")
				switch k {
				case "t":
					if tsText == "" {
						tsText = val
					}
				case "v1":
					if len(sigs) < maxSignatures {
						sigs = append(sigs, val)
					}
				}
			}
		}
		if tsText == "" {
			return errStripeNoTimestamp
		}
	}
	if _, err := checkTimestamp(tsText, now, v.tolerance, timestampErrors{errInvalidTimestamp, errTimestampOld, errTimestampNew}); err != nil {
		return err
	}
	prefix := tsText + "."
	if v.slack {
		prefix = "v0:" + tsText + ":"
	}
	var (
		macBuf [4][sha256.Size]byte
		macs   [][sha256.Size]byte
	)
	for _, hexSig := range sigs {
		var sig [sha256.Size]byte
		if len(hexSig) != 2*sha256.Size {
			continue
		}
		if _, err := hex.Decode(sig[:], []byte(hexSig)); err != nil {
			continue
		}
		if macs == nil {
			macs = macBuf[:0]
			for _, k := range v.keys {
				macs = append(macs, k.sumPrefixed(prefix, body))
			}
		}
		for i := range macs {
			if hmac.Equal(sig[:], macs[i][:]) {
				return nil
			}
		}
	}
	return errNoMatchingSignature
}

func (v *timestampVerifier) String() string {
	scheme := "stripe"
	if v.slack {
		scheme = "slack"
	}
	return fmt.Sprintf("%s verifier (%d secrets, redacted)", scheme, len(v.keys))
}
func (v *timestampVerifier) GoString() string { return v.String() }

// standardVerifier: Standard Webhooks v1 (HMAC) and v1a (ed25519).
type standardVerifier struct {
	keys      []*macKey
	pubs      []ed25519.PublicKey
	tolerance time.Duration
}

func (v *standardVerifier) Verify(h http.Header, body []byte, now time.Time) error {
	id := h.Get(hdrWebhookID)
	if id == "" {
		return errMissingWebhookID
	}
	tsText := h.Get(hdrWebhookTimestamp)
	if tsText == "" {
		return errMissingWebhookTimestamp
	}
	sigs := h.Values(hdrWebhookSignature)
	if !anyNonBlank(sigs) {
		return errMissingWebhookSignature
	}
	ts, err := checkTimestamp(tsText, now, v.tolerance, timestampErrors{errInvalidWebhookTimestamp, errWebhookTimestampOld, errWebhookTimestampNew})
	if err != nil {
		return err
	}

	var (
		macBuf   [4][sha256.Size]byte
		macs     [][sha256.Size]byte // computed on first v1 entry
		msg      []byte              // "id.ts.body", built on first v1a entry
		examined int
	)
	for _, line := range sigs {
		for field := range strings.FieldsSeq(line) {
			if examined == maxSignatures {
				return errNoMatchingSignature
			}
			examined++
			version, b64, ok := strings.Cut(field, ",")
			if !ok {
				continue
			}
			switch version {
			case "v1":
				if len(v.keys) == 0 || len(b64) != 44 {
					continue
				}
				var sig [33]byte // DecodedLen(44)
				n, err := base64.StdEncoding.Decode(sig[:], []byte(b64))
				if err != nil || n != sha256.Size {
					continue
				}
				if macs == nil {
					macs = macBuf[:0]
					for _, k := range v.keys {
						macs = append(macs, k.sumSigned(id, ts, body))
					}
				}
				for i := range macs {
					if hmac.Equal(sig[:n], macs[i][:]) {
						return nil
					}
				}
			case "v1a":
				if len(v.pubs) == 0 || len(b64) != 88 {
					continue
				}
				var sig [66]byte // DecodedLen(88)
				n, err := base64.StdEncoding.Decode(sig[:], []byte(b64))
				if err != nil || n != ed25519.SignatureSize {
					continue
				}
				if msg == nil {
					msg = appendSignedContent(make([]byte, 0, len(id)+len(tsText)+2+len(body)), id, ts, body)
				}
				for _, pub := range v.pubs {
					if ed25519.Verify(pub, msg, sig[:n]) {
						return nil
					}
				}
			}
		}
	}
	return errNoMatchingSignature
}

func (v *standardVerifier) String() string {
	return fmt.Sprintf("standard verifier (%d secrets, %d public keys, redacted)", len(v.keys), len(v.pubs))
}
func (v *standardVerifier) GoString() string { return v.String() }

// parseUnixSeconds accepts a decimal integer without sign decorations.
func parseUnixSeconds(s string) (int64, error) {
	if s == "" || len(s) > 19 {
		return 0, errInvalidWebhookTimestamp
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errInvalidWebhookTimestamp
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

func anyNonBlank(vals []string) bool {
	for _, s := range vals {
		if strings.TrimSpace(s) != "" {
			return true
		}
	}
	return false
}

// plainVerifier: GitHub-style HMAC-SHA256 of the raw body in one header.
type plainVerifier struct {
	keys   []*macKey
	header string // canonical
	base64 bool
	prefix string

	errMissing, errPrefix, errMalformed, errMismatch error
}

// githubPrefix starts GitHub's X-Hub-Signature-256 values.
const githubPrefix = "sha256="

func (v *plainVerifier) Verify(h http.Header, body []byte, _ time.Time) error {
	vals := h.Values(v.header)
	if !anyNonBlank(vals) {
		return v.errMissing
	}
	if len(vals) > maxSignatures {
		vals = vals[:maxSignatures]
	}
	var (
		macBuf [4][sha256.Size]byte
		macs   [][sha256.Size]byte
		err    error = v.errMismatch
	)
	for _, val := range vals {
		val = strings.TrimSpace(val)
		if v.prefix != "" {
			if len(val) < len(v.prefix) || !strings.EqualFold(val[:len(v.prefix)], v.prefix) {
				err = v.errPrefix
				continue
			}
			val = val[len(v.prefix):]
		} else if len(val) > len(githubPrefix) && strings.EqualFold(val[:len(githubPrefix)], githubPrefix) {
			// GitHub's form, in the default header: taken without a
			// prefix configured (neither hex nor base64 holds "=" there).
			val = val[len(githubPrefix):]
		}
		var (
			sig [sha256.Size + 2]byte
			n   int
			ok  bool
		)
		if v.base64 {
			n, ok = decodeMACBase64(sig[:], val)
		} else if len(val) == 2*sha256.Size {
			var e error
			n, e = hex.Decode(sig[:], []byte(val))
			ok = e == nil
		}
		if !ok || n != sha256.Size {
			err = v.errMalformed
			continue
		}
		if macs == nil {
			macs = macBuf[:0]
			for _, k := range v.keys {
				macs = append(macs, k.sumBody(body))
			}
		}
		for i := range macs {
			if hmac.Equal(sig[:n], macs[i][:]) {
				return nil
			}
		}
		err = v.errMismatch
	}
	return err
}

// decodeMACBase64 decodes a base64 SHA-256 MAC, padded (44 chars) or not (43).
func decodeMACBase64(dst []byte, s string) (int, bool) {
	enc := base64.StdEncoding
	switch len(s) {
	case 44:
	case 43:
		enc = base64.RawStdEncoding
	default:
		return 0, false
	}
	n, err := enc.Decode(dst, []byte(s))
	return n, err == nil
}

func (v *plainVerifier) String() string {
	return "hmac-sha256 verifier (" + v.header + ", secrets redacted)"
}
func (v *plainVerifier) GoString() string { return v.String() }
