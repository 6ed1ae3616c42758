package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func mustVerifier(t testing.TB, scheme string, secrets []string, header, encoding, prefix string, tol time.Duration) Verifier {
	t.Helper()
	v, err := NewVerifier(scheme, secrets, header, encoding, prefix, tol)
	if err != nil {
		t.Fatalf("NewVerifier(%q): %v", scheme, err)
	}
	return v
}

// refSigned returns headers signed by the reference library, i.e. by an
// implementation independent of ours.
func refSigned(t testing.TB, secret, id string, ts time.Time, body []byte) http.Header {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := wh.Sign(id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("webhook-signature", sig)
	return h
}

func TestVerifyStandard(t *testing.T) {
	secret, other := newWhsec(t), newWhsec(t)
	now := time.Unix(1764000000, 0)
	body := []byte(`{"type":"invoice.paid","data":{"id":"in_1"}}`)
	id := "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
	v := mustVerifier(t, "standard", []string{secret}, "", "", "", 0)

	cases := []struct {
		name    string
		h       http.Header
		body    []byte
		wantErr error // nil: passes
	}{
		{"valid", refSigned(t, secret, id, now, body), body, nil},
		{"tampered body", refSigned(t, secret, id, now, body), append(bytes.Clone(body), ' '), errNoMatchingSignature},
		{"empty body", refSigned(t, secret, id, now, body), nil, errNoMatchingSignature},
		{"wrong secret", refSigned(t, other, id, now, body), body, errNoMatchingSignature},
		{"4m59s old", refSigned(t, secret, id, now.Add(-5*time.Minute+time.Second), body), body, nil},
		{"exactly 5m old", refSigned(t, secret, id, now.Add(-5*time.Minute), body), body, nil},
		{"5m01s old", refSigned(t, secret, id, now.Add(-5*time.Minute-time.Second), body), body, errWebhookTimestampOld},
		{"a day old", refSigned(t, secret, id, now.Add(-24*time.Hour), body), body, errWebhookTimestampOld},
		{"4m59s ahead", refSigned(t, secret, id, now.Add(5*time.Minute-time.Second), body), body, nil},
		{"5m01s ahead", refSigned(t, secret, id, now.Add(5*time.Minute+time.Second), body), body, errWebhookTimestampNew},
		{"epoch", refSigned(t, secret, id, time.Unix(0, 0), body), body, errWebhookTimestampOld},
	}
	// Changing the id or the timestamp breaks the signature even in tolerance.
	h := refSigned(t, secret, id, now, body)
	h.Set("webhook-id", id+"x")
	cases = append(cases, struct {
		name    string
		h       http.Header
		body    []byte
		wantErr error
	}{"other id", h, body, errNoMatchingSignature})
	h = refSigned(t, secret, id, now, body)
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix()+1, 10))
	cases = append(cases, struct {
		name    string
		h       http.Header
		body    []byte
		wantErr error
	}{"other timestamp", h, body, errNoMatchingSignature})

	for _, c := range cases {
		err := v.Verify(c.h, c.body, now)
		if !errors.Is(err, c.wantErr) || (c.wantErr == nil) != (err == nil) {
			t.Errorf("%s: verify = %v, want %v", c.name, err, c.wantErr)
		}
	}
}

func TestVerifyStandardMissingAndMalformedHeaders(t *testing.T) {
	secret := newWhsec(t)
	now := time.Now()
	body := []byte(`{}`)
	v := mustVerifier(t, "standard", []string{secret}, "", "", "", 0)
	base := func() http.Header { return refSigned(t, secret, "msg_1", now, body) }

	cases := []struct {
		name    string
		edit    func(http.Header)
		wantErr error
		wantMsg string
	}{
		{"no id", func(h http.Header) { h.Del("webhook-id") }, errMissingWebhookID, "missing webhook-id header"},
		{"no timestamp", func(h http.Header) { h.Del("webhook-timestamp") }, errMissingWebhookTimestamp, "missing webhook-timestamp header"},
		{"no signature", func(h http.Header) { h.Del("webhook-signature") }, errMissingWebhookSignature, "missing webhook-signature header"},
		{"blank signature", func(h http.Header) { h.Set("webhook-signature", "  ") }, errMissingWebhookSignature, "missing webhook-signature header"},
		{"no headers", func(h http.Header) { clear(h) }, errMissingWebhookID, "missing webhook-id header"},
		{"timestamp in ms", func(h http.Header) {
			h.Set("webhook-timestamp", strconv.FormatInt(now.UnixMilli(), 10))
		}, errWebhookTimestampNew, "too far in the future"},
		{"timestamp text", func(h http.Header) { h.Set("webhook-timestamp", "2026-01-01T00:00:00Z") }, errInvalidWebhookTimestamp, "invalid webhook-timestamp"},
		{"timestamp signed", func(h http.Header) { h.Set("webhook-timestamp", "+"+h.Get("webhook-timestamp")) }, errInvalidWebhookTimestamp, "invalid webhook-timestamp"},
		{"timestamp overflow", func(h http.Header) { h.Set("webhook-timestamp", "9999999999999999999") }, errInvalidWebhookTimestamp, "invalid webhook-timestamp"},
		{"unknown version only", func(h http.Header) {
			h.Set("webhook-signature", strings.Replace(h.Get("webhook-signature"), "v1,", "v2,", 1))
		}, errNoMatchingSignature, "no matching signature"},
		{"no comma", func(h http.Header) {
			h.Set("webhook-signature", strings.Replace(h.Get("webhook-signature"), "v1,", "v1", 1))
		}, errNoMatchingSignature, "no matching signature"},
		{"truncated", func(h http.Header) {
			s := h.Get("webhook-signature")
			h.Set("webhook-signature", s[:len(s)-2])
		}, errNoMatchingSignature, "no matching signature"},
	}
	for _, c := range cases {
		h := base()
		c.edit(h)
		err := v.Verify(h, body, now)
		if !errors.Is(err, c.wantErr) || err == nil || !strings.Contains(err.Error(), c.wantMsg) {
			t.Errorf("%s: verify = %v, want %v containing %q", c.name, err, c.wantErr, c.wantMsg)
		}
	}
}

func TestVerifyStandardMultipleSignatures(t *testing.T) {
	secret := newWhsec(t)
	now := time.Now()
	body := []byte(`{"a":1}`)
	v := mustVerifier(t, "standard", []string{secret}, "", "", "", 0)
	good := refSigned(t, secret, "msg_1", now, body).Get("webhook-signature")
	wrong := refSigned(t, newWhsec(t), "msg_1", now, body).Get("webhook-signature")

	for name, sig := range map[string]string{
		"good last":       wrong + " v2,abc v1a," + strings.Repeat("A", 86) + "== " + good,
		"good first":      good + " " + wrong,
		"double spaces":   "  " + wrong + "   " + good + " ",
		"garbage around":  "v1, , ,,, v1,!!!! " + good,
		"separate header": "", // set below as two header lines
	} {
		h := refSigned(t, secret, "msg_1", now, body)
		switch name {
		case "separate header":
			h["Webhook-Signature"] = []string{wrong, good}
		default:
			h.Set("webhook-signature", sig)
		}
		if err := v.Verify(h, body, now); err != nil {
			t.Errorf("%s: verify = %v, want pass", name, err)
		}
	}
	// Only wrong ones: fails.
	h := refSigned(t, secret, "msg_1", now, body)
	h.Set("webhook-signature", wrong+" "+wrong)
	if err := v.Verify(h, body, now); !errors.Is(err, errNoMatchingSignature) {
		t.Errorf("two wrong signatures: verify = %v", err)
	}
	// The good one beyond the examined maximum is not looked at.
	h.Set("webhook-signature", strings.Repeat(wrong+" ", maxSignatures)+good)
	if err := v.Verify(h, body, now); !errors.Is(err, errNoMatchingSignature) {
		t.Errorf("good signature after %d others: verify = %v, want no match", maxSignatures, err)
	}
}

func TestVerifyStandardRotation(t *testing.T) {
	oldSecret, newSecret := newWhsec(t), "raw-secret-bytes"
	now := time.Now()
	body := []byte(`{"r":true}`)
	v := mustVerifier(t, "standard", []string{newSecret, oldSecret}, "", "", "", 0)
	for name, s := range map[string]Signer{
		"old only": mustSigner(t, "standard", []string{oldSecret}, "", "", ""),
		"new only": mustSigner(t, "standard", []string{newSecret}, "", "", ""),
		"both":     mustSigner(t, "standard", []string{oldSecret, newSecret}, "", "", ""),
	} {
		if err := v.Verify(swHeaders(s, "msg_r", now.Unix(), body), body, now); err != nil {
			t.Errorf("sender with %s: verify = %v", name, err)
		}
	}
	s := mustSigner(t, "standard", []string{newWhsec(t)}, "", "", "")
	if err := v.Verify(swHeaders(s, "msg_r", now.Unix(), body), body, now); err == nil {
		t.Error("sender with an unrelated secret passes")
	}
}

func TestVerifyStandardTolerance(t *testing.T) {
	secret := newWhsec(t)
	now := time.Now()
	body := []byte(`x`)
	v := mustVerifier(t, "standard", []string{secret}, "", "", "", 30*time.Second)
	if err := v.Verify(refSigned(t, secret, "m", now.Add(-29*time.Second), body), body, now); err != nil {
		t.Errorf("29s old with 30s tolerance: %v", err)
	}
	if err := v.Verify(refSigned(t, secret, "m", now.Add(-31*time.Second), body), body, now); !errors.Is(err, errWebhookTimestampOld) {
		t.Errorf("31s old with 30s tolerance: %v", err)
	}
	if err := v.Verify(refSigned(t, secret, "m", now.Add(31*time.Second), body), body, now); !errors.Is(err, errWebhookTimestampNew) {
		t.Errorf("31s ahead with 30s tolerance: %v", err)
	}
}

func TestVerifyStandardPublishedVector(t *testing.T) {
	v := mustVerifier(t, "standard", []string{swVectorSecret}, "", "", "", 0)
	h := http.Header{}
	h.Set("webhook-id", swVectorID)
	h.Set("webhook-timestamp", strconv.Itoa(swVectorTS))
	h.Set("webhook-signature", swVectorSig)
	if err := v.Verify(h, []byte(swVectorBody), time.Unix(swVectorTS+10, 0)); err != nil {
		t.Fatalf("published vector: %v", err)
	}
	if err := v.Verify(h, []byte(swVectorBody+" "), time.Unix(swVectorTS+10, 0)); err == nil {
		t.Fatal("published vector with a changed body passes")
	}
}

func TestVerifyStandardEd25519(t *testing.T) {
	whsk, whpk, err := generateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	body := []byte(`{"ed":25519}`)
	// Signed with crypto/ed25519 directly, not with our signer.
	seed, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(whsk, "whsk_"))
	content := []byte("msg_ed." + strconv.FormatInt(now.Unix(), 10) + "." + string(body))
	sig := ed25519.Sign(ed25519.NewKeyFromSeed(seed), content)
	h := http.Header{}
	h.Set("webhook-id", "msg_ed")
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("webhook-signature", "v1,"+strings.Repeat("A", 43)+"= v1a,"+base64.StdEncoding.EncodeToString(sig))

	for _, key := range []string{whpk, whsk} {
		v := mustVerifier(t, "standard", []string{newWhsec(t), key}, "", "", "", 0)
		if err := v.Verify(h, body, now); err != nil {
			t.Errorf("key %.5s…: verify = %v", key, err)
		}
		if err := v.Verify(h, append(bytes.Clone(body), '!'), now); !errors.Is(err, errNoMatchingSignature) {
			t.Errorf("key %.5s…, tampered body: verify = %v", key, err)
		}
	}
	_, otherPK, _ := generateKeyPair(rand.Reader)
	if err := mustVerifier(t, "standard", []string{otherPK}, "", "", "", 0).Verify(h, body, now); err == nil {
		t.Error("another public key passes")
	}
	// Our ed25519 signer's output verifies too.
	s := mustSigner(t, "ed25519", []string{whsk}, "", "", "")
	if err := mustVerifier(t, "standard", []string{whpk}, "", "", "", 0).Verify(swHeaders(s, "m", now.Unix(), body), body, now); err != nil {
		t.Errorf("our v1a signature: %v", err)
	}
	// v1a signatures are not checked against HMAC secrets, nor v1 against public keys.
	if err := mustVerifier(t, "standard", []string{newWhsec(t)}, "", "", "", 0).Verify(swHeaders(s, "m", now.Unix(), body), body, now); err == nil {
		t.Error("v1a signature passes an HMAC-only verifier")
	}
}

func TestVerifyHMAC(t *testing.T) {
	secret := "It's a Secret to Everybody"
	body := []byte("Hello, World!")
	const gh = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	now := time.Now()

	github := mustVerifier(t, "hmac-sha256", []string{secret}, "X-Hub-Signature-256", "hex", "sha256=", 0)
	h := http.Header{}
	h.Set("X-Hub-Signature-256", gh)
	if err := github.Verify(h, body, now); err != nil {
		t.Fatalf("GitHub documented example: %v", err)
	}
	// Defaults are GitHub's header and hex; upper-case hex is fine.
	h.Set("X-Hub-Signature-256", "sha256="+strings.ToUpper(gh[len("sha256="):]))
	if err := mustVerifier(t, "hmac-sha256", []string{secret}, "", "", "sha256=", 0).Verify(h, body, now); err != nil {
		t.Fatalf("default header, upper-case hex: %v", err)
	}
	// With no prefix configured, GitHub's "sha256=" is taken as it
	// comes, and so is the bare hex.
	plain := mustVerifier(t, "hmac-sha256", []string{secret}, "", "", "", 0)
	for _, v := range []string{gh, gh[len("sha256="):], "SHA256=" + gh[len("sha256="):]} {
		h.Set("X-Hub-Signature-256", v)
		if err := plain.Verify(h, body, now); err != nil {
			t.Errorf("no prefix configured, %q: %v", v, err)
		}
	}
	h.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("0", 64))
	if err := plain.Verify(h, body, now); err == nil {
		t.Error("no prefix configured: a wrong signature after sha256= was accepted")
	}

	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	mac := m.Sum(nil)
	b64 := mustVerifier(t, "hmac-sha256", []string{"rotated-out", secret}, "X-Signature", "base64", "hmac=", 0)

	cases := []struct {
		name    string
		v       Verifier
		header  string
		value   string
		body    []byte
		wantErr string // "" = pass
	}{
		{"github tampered body", github, "X-Hub-Signature-256", gh, []byte("Hello, World?"), "X-Hub-Signature-256 header: no matching signature"},
		{"github wrong secret", mustVerifier(t, "hmac-sha256", []string{"It's a Secret to Nobody"}, "", "hex", "sha256=", 0), "X-Hub-Signature-256", gh, body, "no matching signature"},
		{"github prefix missing", github, "X-Hub-Signature-256", gh[len("sha256="):], body, `X-Hub-Signature-256 header lacks the "sha256=" prefix`},
		{"github other prefix", github, "X-Hub-Signature-256", "sha1=" + gh[len("sha256="):], body, "lacks the"},
		{"github header missing", github, "X-Other", gh, body, "missing X-Hub-Signature-256 header"},
		{"github not hex", github, "X-Hub-Signature-256", "sha256=" + strings.Repeat("zz", 32), body, "does not hold a hex HMAC-SHA256"},
		{"github short", github, "X-Hub-Signature-256", gh[:len(gh)-2], body, "does not hold a hex HMAC-SHA256"},
		{"base64 valid", b64, "X-Signature", "hmac=" + base64.StdEncoding.EncodeToString(mac), body, ""},
		{"base64 unpadded", b64, "X-Signature", "hmac=" + base64.RawStdEncoding.EncodeToString(mac), body, ""},
		{"base64 with hex value", b64, "X-Signature", "hmac=" + hex.EncodeToString(mac), body, "does not hold a base64 HMAC-SHA256"},
		{"base64 tampered", b64, "X-Signature", "hmac=" + base64.StdEncoding.EncodeToString(mac), append(bytes.Clone(body), 0), "no matching signature"},
		{"base64 no prefix", b64, "X-Signature", base64.StdEncoding.EncodeToString(mac), body, `lacks the "hmac=" prefix`},
	}
	for _, c := range cases {
		h := http.Header{}
		h.Set(c.header, c.value)
		err := c.v.Verify(h, c.body, now)
		if c.wantErr == "" {
			if err != nil {
				t.Errorf("%s: verify = %v, want pass", c.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: verify = %v, want an error containing %q", c.name, err, c.wantErr)
		}
		if err != nil && (strings.Contains(err.Error(), hex.EncodeToString(mac)) || strings.Contains(err.Error(), secret)) {
			t.Errorf("%s: error %q shows the expected signature or the secret", c.name, err)
		}
	}
}

func TestNewVerifierErrors(t *testing.T) {
	cases := []struct {
		name                     string
		scheme                   string
		secrets                  []string
		header, encoding, prefix string
		tol                      time.Duration
		want                     string
	}{
		{"no secret", "standard", nil, "", "", "", 0, "verify standard: no secret"},
		{"empty secret", "standard", []string{""}, "", "", "", 0, "verify standard: secret 1: empty"},
		{"bad whsec", "standard", []string{"a", "whsec_%%%"}, "", "", "", 0, "verify standard: secret 2: invalid whsec_ base64"},
		{"bad whpk", "standard", []string{"whpk_AAAA"}, "", "", "", 0, "secret 1: invalid whpk_ key: 3 bytes"},
		{"negative tolerance", "standard", []string{"a"}, "", "", "", -time.Second, "negative tolerance"},
		{"options on standard", "standard", []string{"a"}, "", "", "sha256=", 0, "apply only to hmac-sha256"},
		{"hmac no secret", "hmac-sha256", nil, "", "", "", 0, "verify hmac-sha256: no secret"},
		{"hmac empty secret", "hmac-sha256", []string{"a", ""}, "", "", "", 0, "verify hmac-sha256: secret 2: empty"},
		{"hmac encoding", "hmac-sha256", []string{"a"}, "", "b64", "", 0, `unknown encoding "b64"`},
		{"hmac header", "hmac-sha256", []string{"a"}, "X-Sig:", "", "", 0, "invalid header name"},
		{"empty scheme", "", []string{"a"}, "", "", "", 0, "verify: unknown scheme"},
		{"ed25519 scheme", "ed25519", []string{"a"}, "", "", "", 0, "verify: unknown scheme"},
		{"stripe no secret", "stripe", nil, "", "", "", 0, "verify stripe: no secret"},
		{"slack empty secret", "slack", []string{""}, "", "", "", 0, "verify slack: secret 1: empty"},
		{"slack header", "slack", []string{"a"}, "X-Sig", "", "", 0, "apply only to hmac-sha256"},
		{"stripe negative tolerance", "stripe", []string{"a"}, "", "", "", -time.Second, "negative tolerance"},
	}
	for _, c := range cases {
		_, err := NewVerifier(c.scheme, c.secrets, c.header, c.encoding, c.prefix, c.tol)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.name, err, c.want)
		}
	}
}

func TestVerifyErrorsNeverContainSecret(t *testing.T) {
	var n int
	for _, bad := range badSecrets() {
		for _, scheme := range []string{"standard", "hmac-sha256", bad, strings.ToLower(bad)} {
			secrets := []string{"fine", bad}
			if scheme == "hmac-sha256" {
				secrets = []string{"fine", ""} // hmac-sha256 takes any non-empty string
			}
			_, err := NewVerifier(scheme, secrets, "", "", "", 0)
			if err == nil {
				continue
			}
			n++
			if strings.Contains(strings.ToUpper(err.Error()), "SEKRET") {
				t.Errorf("scheme %.12q: error %q contains the secret", scheme, err)
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d constructions failed; the test tests little", n)
	}
	// Failed verifications show neither the secret nor the expected signature.
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte(secretMarker+"-0123456789abcdef"))
	v := mustVerifier(t, "standard", []string{secret}, "", "", "", 0)
	now := time.Now()
	body := []byte(`{}`)
	h := refSigned(t, secret, "m", now, body)
	expected := strings.TrimPrefix(h.Get("webhook-signature"), "v1,")
	h.Set("webhook-signature", "v1,"+strings.Repeat("A", 43)+"=")
	err := v.Verify(h, body, now)
	if err == nil || strings.Contains(err.Error(), expected) || strings.Contains(err.Error(), strings.TrimPrefix(secret, "whsec_")) {
		t.Errorf("verify = %v", err)
	}
	if s := fmtAll(v); strings.Contains(s, secretMarker) || strings.Contains(s, strings.TrimPrefix(secret, "whsec_")) {
		t.Errorf("formatted verifier shows the secret: %s", s)
	}
}

func fmtAll(v any) string {
	var b strings.Builder
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		b.WriteString(strings.TrimSpace(fmt.Sprintf(verb, v)))
		b.WriteByte('\n')
	}
	return b.String()
}

func BenchmarkVerifyStandard1KB(b *testing.B) {
	secret := newWhsec(b)
	v := mustVerifier(b, "standard", []string{secret}, "", "", "", 0)
	body := bytes.Repeat([]byte("a"), 1024)
	now := time.Now()
	h := swHeaders(mustSigner(b, "standard", []string{secret}, "", "", ""), "evt_01JD4Z6W3V8Q5T2M9N7K4H1G0F", now.Unix(), body)
	if err := v.Verify(h, body, now); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(h, body, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyHMACHex1KB(b *testing.B) {
	v := mustVerifier(b, "hmac-sha256", []string{"gh-secret"}, "", "hex", "sha256=", 0)
	body := bytes.Repeat([]byte("a"), 1024)
	h := http.Header{}
	mustSigner(b, "hmac-sha256", []string{"gh-secret"}, "X-Hub-Signature-256", "hex", "sha256=").Sign(h, "", 0, body)
	now := time.Now()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(h, body, now); err != nil {
			b.Fatal(err)
		}
	}
}

// verifyCase is a request and the error Verify must return for it.
type verifyCase struct {
	name string
	h    http.Header
	body []byte
	at   time.Time
	want error
}

func runVerifyCases(t *testing.T, v Verifier, cases []verifyCase) {
	t.Helper()
	for _, c := range cases {
		if err := v.Verify(c.h, c.body, c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.want)
		}
	}
}

// hexMAC is HMAC-SHA256(secret, msg) in hex, computed apart from the
// verifier's own code.
func hexMAC(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func TestVerifyStripe(t *testing.T) {
	const secret = "whsec_test_0123456789abcdef"
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"id":"evt_1","type":"payment_intent.succeeded"}`)
	ts := strconv.FormatInt(now.Unix(), 10)
	good := hexMAC(secret, ts+"."+string(body))
	v := mustVerifier(t, "stripe", []string{"old-secret", secret}, "", "", "", 0)
	hdr := func(val string) http.Header {
		h := http.Header{}
		if val != "" {
			h.Set("Stripe-Signature", val)
		}
		return h
	}
	cases := []verifyCase{
		{"valid", hdr("t=" + ts + ",v1=" + good), body, now, nil},
		{"valid among others", hdr("t=" + ts + ",v1=" + strings.Repeat("0", 64) + ",v0=abc,v1=" + good), body, now, nil},
		{"spaces", hdr("t=" + ts + ", v1=" + good), body, now, nil},
		{"missing header", hdr(""), body, now, errMissingStripeSignature},
		{"no timestamp", hdr("v1=" + good), body, now, errStripeNoTimestamp},
		{"bad timestamp", hdr("t=-5,v1=" + good), body, now, errInvalidTimestamp},
		{"too old", hdr("t=" + ts + ",v1=" + good), body, now.Add(6 * time.Minute), errTimestampOld},
		{"too new", hdr("t=" + ts + ",v1=" + good), body, now.Add(-6 * time.Minute), errTimestampNew},
		{"tampered body", hdr("t=" + ts + ",v1=" + good), append(body, ' '), now, errNoMatchingSignature},
		{"other timestamp", hdr("t=" + strconv.FormatInt(now.Unix()+1, 10) + ",v1=" + good), body, now, errNoMatchingSignature},
		{"v0 only", hdr("t=" + ts + ",v0=" + good), body, now, errNoMatchingSignature},
		{"not hex", hdr("t=" + ts + ",v1=" + strings.Repeat("z", 64)), body, now, errNoMatchingSignature},
	}
	runVerifyCases(t, v, cases)
	// The tolerance is the block's.
	v = mustVerifier(t, "stripe", []string{secret}, "", "", "", time.Hour)
	if err := v.Verify(hdr("t="+ts+",v1="+good), body, now.Add(59*time.Minute)); err != nil {
		t.Errorf("within a 1h tolerance: %v", err)
	}
}

func TestVerifySlack(t *testing.T) {
	const secret = "8f742231b10e8888abcd99yyyzzz85a5"
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"type":"event_callback","event":{"type":"app_mention"}}`)
	ts := strconv.FormatInt(now.Unix(), 10)
	good := "v0=" + hexMAC(secret, "v0:"+ts+":"+string(body))
	v := mustVerifier(t, "slack", []string{secret}, "", "", "", 0)
	hdr := func(ts, sig string) http.Header {
		h := http.Header{}
		if ts != "" {
			h.Set("X-Slack-Request-Timestamp", ts)
		}
		if sig != "" {
			h.Set("X-Slack-Signature", sig)
		}
		return h
	}
	cases := []verifyCase{
		{"valid", hdr(ts, good), body, now, nil},
		{"missing timestamp", hdr("", good), body, now, errMissingSlackTimestamp},
		{"missing signature", hdr(ts, ""), body, now, errMissingSlackSignature},
		{"bad timestamp", hdr("soon", good), body, now, errInvalidTimestamp},
		{"too old", hdr(ts, good), body, now.Add(5*time.Minute + time.Second), errTimestampOld},
		{"tampered body", hdr(ts, good), []byte(`{}`), now, errNoMatchingSignature},
		{"no v0 prefix", hdr(ts, strings.TrimPrefix(good, "v0=")), body, now, errNoMatchingSignature},
		{"other secret", hdr(ts, "v0="+hexMAC("other", "v0:"+ts+":"+string(body))), body, now, errNoMatchingSignature},
	}
	runVerifyCases(t, v, cases)
	if s := fmtAll(v); strings.Contains(s, secret) {
		t.Errorf("formatted verifier shows the secret: %s", s)
	}
}
