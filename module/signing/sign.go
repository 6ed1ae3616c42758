package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Header names, in the canonical form net/http uses, so they can be written
// into an http.Header map directly.
const (
	hdrWebhookID        = "Webhook-Id"
	hdrWebhookTimestamp = "Webhook-Timestamp"
	hdrWebhookSignature = "Webhook-Signature"
)

// Key prefixes of the Standard Webhooks secret serialisation.
const (
	prefixWhsec = "whsec_" // symmetric secret
	prefixWhsk  = "whsk_"  // ed25519 secret key
	prefixWhpk  = "whpk_"  // ed25519 public key
)

const (
	defaultSignHeader   = "X-Signature"
	defaultVerifyHeader = "X-Hub-Signature-256"
)

// A Signer adds the signature headers of one outbound delivery. id and ts
// are the delivery's webhook-id and webhook-timestamp (unix seconds), which
// the caller writes itself; body is the exact bytes sent. A Signer is safe
// for concurrent use, and its String and GoString never show key material.
type Signer interface {
	Sign(h http.Header, id string, ts int64, body []byte)
}

// HeaderOf is the header s writes its signatures in.
func HeaderOf(s Signer) string {
	if p, ok := s.(*plainSigner); ok {
		return p.header
	}
	return "Webhook-Signature"
}

// NewSigner builds a Signer for scheme ("standard" or "", "ed25519",
// "hmac-sha256"; see the package documentation) from secrets, which are
// used in order: the standard and ed25519 schemes write one signature per
// secret, so a receiver keeps working while a secret is rotated.
//
// header (default X-Signature), encoding ("hex", the default, or "base64")
// and prefix (printable ASCII, such as "sha256=") apply to "hmac-sha256"
// only, which takes exactly one secret; giving them to another scheme is an
// error. Errors never quote a secret.
func NewSigner(scheme string, secrets []string, header, encoding, prefix string) (Signer, error) {
	switch scheme {
	case "", "standard":
		const what = "sign standard"
		if err := noPlainOptions(what, header, encoding, prefix); err != nil {
			return nil, err
		}
		if len(secrets) == 0 {
			return nil, errors.New(what + ": no secret given")
		}
		s := &standardSigner{keys: make([]*macKey, len(secrets))}
		for i, sec := range secrets {
			key, err := symmetricKey(sec)
			if err != nil {
				return nil, fmt.Errorf("%s: secret %d: %w", what, i+1, err)
			}
			s.keys[i] = newMacKey(key)
		}
		return s, nil

	case "ed25519":
		const what = "sign ed25519"
		if err := noPlainOptions(what, header, encoding, prefix); err != nil {
			return nil, err
		}
		if len(secrets) == 0 {
			return nil, errors.New(what + ": no key given")
		}
		s := &ed25519Signer{keys: make([]ed25519.PrivateKey, len(secrets))}
		for i, sec := range secrets {
			priv, err := parseWhsk(sec)
			if err != nil {
				return nil, fmt.Errorf("%s: key %d: %w", what, i+1, err)
			}
			s.keys[i] = priv
		}
		return s, nil

	case "hmac-sha256":
		const what = "sign hmac-sha256"
		if len(secrets) != 1 {
			return nil, fmt.Errorf("%s: want exactly one secret, got %d", what, len(secrets))
		}
		hdr, enc, err := plainOptions(what, header, defaultSignHeader, encoding, prefix)
		if err != nil {
			return nil, err
		}
		if secrets[0] == "" {
			return nil, fmt.Errorf("%s: secret 1: empty", what)
		}
		return &plainSigner{
			key:    newMacKey([]byte(secrets[0])),
			header: hdr,
			base64: enc == "base64",
			prefix: prefix,
		}, nil
	}
	// The scheme is not quoted: a misplaced secret must not be echoed.
	return nil, errors.New("sign: unknown scheme (want standard, ed25519 or hmac-sha256)")
}

// publicKey returns the "whpk_<base64>" public key for a whsk_ key, for
// receivers of ed25519-signed deliveries.
func publicKey(whsk string) (string, error) {
	priv, err := parseWhsk(whsk)
	if err != nil {
		return "", fmt.Errorf("public key: %w", err)
	}
	return formatWhpk(priv.Public().(ed25519.PublicKey)), nil
}

func formatWhpk(pub ed25519.PublicKey) string {
	return prefixWhpk + base64.StdEncoding.EncodeToString(pub)
}

func formatWhsk(priv ed25519.PrivateKey) string {
	return prefixWhsk + base64.StdEncoding.EncodeToString(priv.Seed())
}

func formatWhsec(key []byte) string {
	return prefixWhsec + base64.StdEncoding.EncodeToString(key)
}

// symmetricKey turns a configured secret into HMAC key bytes: whsec_<base64>
// is decoded, anything else is used as is. Errors never quote the secret.
func symmetricKey(secret string) ([]byte, error) {
	if secret == "" {
		return nil, errors.New("empty")
	}
	if b64, ok := strings.CutPrefix(strings.TrimSpace(secret), prefixWhsec); ok {
		key, err := decodeKeyBase64(b64)
		if err != nil {
			return nil, fmt.Errorf("invalid %s base64", prefixWhsec)
		}
		if len(key) == 0 {
			return nil, fmt.Errorf("empty %s secret", prefixWhsec)
		}
		return key, nil
	}
	return []byte(secret), nil
}

// parseWhsk decodes a whsk_ key: the 32-byte seed, or the 64-byte private key
// (seed followed by its public key, as crypto/ed25519 and libsodium store
// it). Errors never quote the key.
func parseWhsk(s string) (ed25519.PrivateKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty")
	}
	b64, ok := strings.CutPrefix(s, prefixWhsk)
	if !ok {
		switch {
		case strings.HasPrefix(s, prefixWhpk):
			return nil, fmt.Errorf("this is a %s public key; signing needs the %s secret key", prefixWhpk, prefixWhsk)
		case strings.HasPrefix(s, prefixWhsec):
			return nil, fmt.Errorf("this is a %s HMAC secret; ed25519 needs a %s key", prefixWhsec, prefixWhsk)
		}
		return nil, fmt.Errorf("want a %s<base64> key", prefixWhsk)
	}
	raw, err := decodeKeyBase64(b64)
	if err != nil {
		return nil, fmt.Errorf("invalid %s base64", prefixWhsk)
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case ed25519.PrivateKeySize:
		priv := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
		if !bytes.Equal(priv[ed25519.SeedSize:], raw[ed25519.SeedSize:]) {
			return nil, fmt.Errorf("invalid %s key: its public half does not match its seed", prefixWhsk)
		}
		return priv, nil
	}
	return nil, fmt.Errorf("invalid %s key: %d bytes, want %d (seed) or %d (private key)",
		prefixWhsk, len(raw), ed25519.SeedSize, ed25519.PrivateKeySize)
}

// parseWhpk decodes a whpk_ public key.
func parseWhpk(s string) (ed25519.PublicKey, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), prefixWhpk)
	if !ok {
		return nil, fmt.Errorf("want a %s<base64> key", prefixWhpk)
	}
	raw, err := decodeKeyBase64(b64)
	if err != nil {
		return nil, fmt.Errorf("invalid %s base64", prefixWhpk)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("invalid %s key: %d bytes, want %d", prefixWhpk, len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// decodeKeyBase64 accepts standard base64 with or without padding.
func decodeKeyBase64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

func noPlainOptions(what, header, encoding, prefix string) error {
	if header != "" || encoding != "" || prefix != "" {
		return errors.New(what + ": header, encoding and prefix apply only to hmac-sha256")
	}
	return nil
}

// plainOptions validates the options of the hmac-sha256 scheme and returns
// the canonical header name and the encoding.
func plainOptions(what, header, defHeader, encoding, prefix string) (string, string, error) {
	if header == "" {
		header = defHeader
	}
	if !ValidHeaderName(header) {
		return "", "", fmt.Errorf("%s: invalid header name %q", what, header)
	}
	switch encoding {
	case "":
		encoding = "hex"
	case "hex", "base64":
	default:
		return "", "", fmt.Errorf("%s: unknown encoding %q (want hex or base64)", what, encoding)
	}
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; c < 0x21 || c > 0x7e {
			return "", "", fmt.Errorf("%s: prefix must be printable ASCII without spaces", what)
		}
	}
	return http.CanonicalHeaderKey(header), encoding, nil
}

// TokenPunct are the punctuation characters an RFC 9110 token (a header
// field name) may hold besides ASCII letters and digits; error messages
// quote it so that users learn the rule.
const TokenPunct = "!#$%&'*+-.^_`|~"

// ValidHeaderName reports whether s is an RFC 9110 token, the syntax of a
// header field name: net/http refuses anything else, but only when a
// request is sent, so configuration checks names with this up front.
func ValidHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte(TokenPunct, c) >= 0:
		default:
			return false
		}
	}
	return true
}

// macKey is one HMAC-SHA256 key with a pool of keyed hash states, so signing
// neither re-derives the padded key nor allocates per call.
type macKey struct {
	pool sync.Pool // of *macState
}

type macState struct {
	h   hash.Hash
	buf []byte // the signed prefix ("id.ts.") scratch
	sum [sha256.Size]byte
}

func newMacKey(key []byte) *macKey {
	key = bytes.Clone(key)
	k := &macKey{}
	k.pool.New = func() any {
		return &macState{h: hmac.New(sha256.New, key), buf: make([]byte, 0, 128)}
	}
	return k
}

// sumSigned returns HMAC-SHA256(key, "id.ts.body").
func (k *macKey) sumSigned(id string, ts int64, body []byte) [sha256.Size]byte {
	st := k.pool.Get().(*macState)
	st.buf = append(st.buf[:0], id...)
	st.buf = append(st.buf, '.')
	st.buf = strconv.AppendInt(st.buf, ts, 10)
	st.buf = append(st.buf, '.')
	return k.sum(st, body)
}

// sumPrefixed returns HMAC-SHA256(key, prefix + body).
func (k *macKey) sumPrefixed(prefix string, body []byte) [sha256.Size]byte {
	st := k.pool.Get().(*macState)
	st.buf = append(st.buf[:0], prefix...)
	return k.sum(st, body)
}

// sumBody returns HMAC-SHA256(key, body).
func (k *macKey) sumBody(body []byte) [sha256.Size]byte {
	st := k.pool.Get().(*macState)
	st.buf = st.buf[:0]
	return k.sum(st, body)
}

// sum returns HMAC-SHA256(key, st.buf + body) and gives st back to the
// pool (unless a long prefix grew its buffer).
func (k *macKey) sum(st *macState, body []byte) [sha256.Size]byte {
	st.h.Write(st.buf)
	st.h.Write(body)
	st.h.Sum(st.sum[:0])
	out := st.sum
	st.h.Reset()
	if cap(st.buf) <= 1024 {
		k.pool.Put(st)
	}
	return out
}

// standardSigner: Standard Webhooks v1 (HMAC-SHA256).
type standardSigner struct {
	keys []*macKey
}

const v1SigLen = len("v1,") + 44 // base64 of 32 bytes

func (s *standardSigner) Sign(h http.Header, id string, ts int64, body []byte) {
	var sb strings.Builder
	sb.Grow(len(s.keys)*(v1SigLen+1) - 1)
	var enc [44]byte
	for i, k := range s.keys {
		if i > 0 {
			sb.WriteByte(' ')
		}
		mac := k.sumSigned(id, ts, body)
		base64.StdEncoding.Encode(enc[:], mac[:])
		sb.WriteString("v1,")
		sb.Write(enc[:])
	}
	h[hdrWebhookSignature] = []string{sb.String()}
}

func (s *standardSigner) String() string {
	return fmt.Sprintf("standard signer (%d secrets, redacted)", len(s.keys))
}
func (s *standardSigner) GoString() string { return s.String() }

// ed25519Signer: Standard Webhooks v1a.
type ed25519Signer struct {
	keys []ed25519.PrivateKey
}

var signedContentPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

const v1aSigLen = len("v1a,") + 88 // base64 of 64 bytes

func (s *ed25519Signer) Sign(h http.Header, id string, ts int64, body []byte) {
	bp := signedContentPool.Get().(*[]byte)
	msg := appendSignedContent((*bp)[:0], id, ts, body)
	var sb strings.Builder
	sb.Grow(len(s.keys)*(v1aSigLen+1) - 1)
	var enc [88]byte
	for i, k := range s.keys {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sig := ed25519.Sign(k, msg)
		base64.StdEncoding.Encode(enc[:], sig)
		sb.WriteString("v1a,")
		sb.Write(enc[:])
	}
	h[hdrWebhookSignature] = []string{sb.String()}
	if cap(msg) <= 1<<20 {
		*bp = msg[:0]
		signedContentPool.Put(bp)
	}
}

func (s *ed25519Signer) String() string {
	return fmt.Sprintf("ed25519 signer (%d keys, redacted)", len(s.keys))
}
func (s *ed25519Signer) GoString() string { return s.String() }

func appendSignedContent(b []byte, id string, ts int64, body []byte) []byte {
	b = append(b, id...)
	b = append(b, '.')
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, '.')
	return append(b, body...)
}

// plainSigner: HMAC-SHA256 of the raw body in one header.
type plainSigner struct {
	key    *macKey
	header string // canonical
	base64 bool
	prefix string
}

func (s *plainSigner) Sign(h http.Header, _ string, _ int64, body []byte) {
	mac := s.key.sumBody(body)
	var sb strings.Builder
	if s.base64 {
		var enc [44]byte
		base64.StdEncoding.Encode(enc[:], mac[:])
		sb.Grow(len(s.prefix) + len(enc))
		sb.WriteString(s.prefix)
		sb.Write(enc[:])
	} else {
		var enc [2 * sha256.Size]byte
		hex.Encode(enc[:], mac[:])
		sb.Grow(len(s.prefix) + len(enc))
		sb.WriteString(s.prefix)
		sb.Write(enc[:])
	}
	h[s.header] = []string{sb.String()}
}

func (s *plainSigner) String() string {
	return "hmac-sha256 signer (" + s.header + ", secret redacted)"
}
func (s *plainSigner) GoString() string { return s.String() }
