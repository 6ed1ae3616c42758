package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"golang.org/x/net/http/httpguts"
)

// The test vector published with the Standard Webhooks reference libraries
// (libraries/go/webhook_test.go TestWebhookSign, and the same values in the
// other languages' tests).
const (
	swVectorSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	swVectorID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	swVectorTS     = 1614265330
	swVectorBody   = `{"test": 2432232314}`
	swVectorSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

	// The ed25519 vector of the reference Go library's asymmetric signing
	// test (libraries/go/webhook_asymmetric_test.go, TestAsymmetricWebhookSign):
	// the base64 of a 32-byte seed, with the same id, timestamp and payload.
	swVectorWhsk = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="
	swVectorV1a  = "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
)

func mustSigner(t testing.TB, scheme string, secrets []string, header, encoding, prefix string) Signer {
	t.Helper()
	s, err := NewSigner(scheme, secrets, header, encoding, prefix)
	if err != nil {
		t.Fatalf("NewSigner(%q): %v", scheme, err)
	}
	return s
}

func newWhsec(t testing.TB) string {
	t.Helper()
	s, err := generateSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// swHeaders is what a receiver sees: the signer's output plus the id and
// timestamp headers the delivery code adds.
func swHeaders(s Signer, id string, ts int64, body []byte) http.Header {
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	s.Sign(h, id, ts, body)
	return h
}

func TestSignStandardPublishedVector(t *testing.T) {
	for _, scheme := range []string{"", "standard"} {
		s := mustSigner(t, scheme, []string{swVectorSecret}, "", "", "")
		h := http.Header{}
		s.Sign(h, swVectorID, swVectorTS, []byte(swVectorBody))
		if got := h.Get("webhook-signature"); got != swVectorSig {
			t.Errorf("scheme %q: webhook-signature = %q, want %q", scheme, got, swVectorSig)
		}
		if n := len(h.Values("webhook-signature")); n != 1 {
			t.Errorf("scheme %q: %d webhook-signature lines, want 1", scheme, n)
		}
	}
	// The reference library agrees on the vector (a guard on the vector itself).
	wh, err := standardwebhooks.NewWebhook(swVectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	if sig, _ := wh.Sign(swVectorID, time.Unix(swVectorTS, 0), []byte(swVectorBody)); sig != swVectorSig {
		t.Fatalf("reference library signs the vector as %q", sig)
	}
}

func TestSignStandardAcceptedByReferenceLibrary(t *testing.T) {
	body := bytes.Repeat([]byte(`{"k":"v","n":1}`), 70)
	id := "evt_2KWPBgLlAfxdpx2AI54pPJ85f4W"
	ts := time.Now().Unix()

	t.Run("whsec", func(t *testing.T) {
		secret := newWhsec(t)
		h := swHeaders(mustSigner(t, "standard", []string{secret}, "", "", ""), id, ts, body)
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, h); err != nil {
			t.Fatalf("reference library rejects our signature: %v", err)
		}
		// Tampering must make the reference library reject it: the check above
		// is not vacuous.
		if err := wh.Verify(append(bytes.Clone(body), ' '), h); err == nil {
			t.Fatal("reference library accepts a tampered body")
		}
	})
	t.Run("raw", func(t *testing.T) {
		secret := "a plain shared secret, not whsec_"
		h := swHeaders(mustSigner(t, "standard", []string{secret}, "", "", ""), id, ts, body)
		wh, err := standardwebhooks.NewWebhookRaw([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, h); err != nil {
			t.Fatalf("reference library rejects our signature for a raw secret: %v", err)
		}
	})
	t.Run("unpadded whsec", func(t *testing.T) {
		key := bytes.Repeat([]byte{0xA7}, 25) // 25 bytes: padded base64 ends in "="
		padded := "whsec_" + base64.StdEncoding.EncodeToString(key)
		unpadded := "whsec_" + base64.RawStdEncoding.EncodeToString(key)
		h := swHeaders(mustSigner(t, "standard", []string{unpadded}, "", "", ""), id, ts, body)
		wh, err := standardwebhooks.NewWebhook(padded)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, h); err != nil {
			t.Fatalf("unpadded whsec_ not decoded like the padded one: %v", err)
		}
	})
}

func TestSignStandardRotation(t *testing.T) {
	oldSecret, newSecret, otherSecret := newWhsec(t), newWhsec(t), newWhsec(t)
	body := []byte(`{"id":"evt_1","type":"task.finished","data":{}}`)
	id, ts := "evt_1", time.Now().Unix()

	h := swHeaders(mustSigner(t, "standard", []string{newSecret, oldSecret}, "", "", ""), id, ts, body)
	sigs := strings.Split(h.Get("webhook-signature"), " ")
	if len(sigs) != 2 {
		t.Fatalf("webhook-signature %q: want 2 space-separated signatures", h.Get("webhook-signature"))
	}
	// Config order: each entry is what a one-secret signer produces.
	for i, sec := range []string{newSecret, oldSecret} {
		one := swHeaders(mustSigner(t, "standard", []string{sec}, "", "", ""), id, ts, body)
		if sigs[i] != one.Get("webhook-signature") {
			t.Errorf("signature %d = %q, want the one of secret %d, %q", i+1, sigs[i], i+1, one.Get("webhook-signature"))
		}
		if !strings.HasPrefix(sigs[i], "v1,") {
			t.Errorf("signature %d = %q lacks v1,", i+1, sigs[i])
		}
	}
	// A receiver holding either secret accepts; one holding neither rejects.
	for name, sec := range map[string]string{"new": newSecret, "old": oldSecret} {
		wh, err := standardwebhooks.NewWebhook(sec)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, h); err != nil {
			t.Errorf("receiver with the %s secret rejects: %v", name, err)
		}
	}
	wh, _ := standardwebhooks.NewWebhook(otherSecret)
	if err := wh.Verify(body, h); err == nil {
		t.Error("receiver with an unrelated secret accepts")
	}
}

func TestSignEd25519(t *testing.T) {
	whsk, whpk, err := generateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	whsk2, whpk2, err := generateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := publicKey(whsk); err != nil || got != whpk {
		t.Fatalf("publicKey(generated whsk) = %q, %v; want %q", got, err, whpk)
	}
	s := mustSigner(t, "ed25519", []string{whsk, whsk2}, "", "", "")
	body := []byte(`{"id":"evt_9","data":{"x":[1,2,3]}}`)
	id, ts := "evt_9", int64(1764000000)
	h := swHeaders(s, id, ts, body)

	sigs := strings.Split(h.Get("webhook-signature"), " ")
	if len(sigs) != 2 {
		t.Fatalf("webhook-signature %q: want 2 signatures", h.Get("webhook-signature"))
	}
	content := []byte(id + "." + strconv.FormatInt(ts, 10) + "." + string(body))
	for i, pk := range []string{whpk, whpk2} {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(pk, "whpk_"))
		if err != nil || len(raw) != ed25519.PublicKeySize {
			t.Fatalf("public key %q: %v (%d bytes)", pk, err, len(raw))
		}
		pub := ed25519.PublicKey(raw)
		b64, ok := strings.CutPrefix(sigs[i], "v1a,")
		if !ok {
			t.Fatalf("signature %d = %q lacks v1a,", i+1, sigs[i])
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatal(err)
		}
		if !ed25519.Verify(pub, content, sig) {
			t.Errorf("signature %d does not verify with crypto/ed25519 over id.ts.body", i+1)
		}
		if ed25519.Verify(pub, append(bytes.Clone(content), '!'), sig) {
			t.Errorf("signature %d verifies a tampered content", i+1)
		}
	}
}

func TestSignEd25519PublishedVector(t *testing.T) {
	s := mustSigner(t, "ed25519", []string{swVectorWhsk}, "", "", "")
	h := http.Header{}
	s.Sign(h, swVectorID, swVectorTS, []byte(swVectorBody))
	if got := h.Get("webhook-signature"); got != swVectorV1a {
		t.Fatalf("webhook-signature = %q, want %q", got, swVectorV1a)
	}
}

func TestSignEd25519KeyForms(t *testing.T) {
	// RFC 8032 §7.1 test 1: seed and public key.
	seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	pub, _ := hex.DecodeString("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
	wantPK := "whpk_" + base64.StdEncoding.EncodeToString(pub)

	seedForm := "whsk_" + base64.StdEncoding.EncodeToString(seed)
	fullForm := "whsk_" + base64.StdEncoding.EncodeToString(append(bytes.Clone(seed), pub...))
	for name, k := range map[string]string{"seed": seedForm, "64-byte": fullForm, "newline": seedForm + "\n"} {
		got, err := publicKey(k)
		if err != nil || got != wantPK {
			t.Errorf("%s form: publicKey = %q, %v; want %q", name, got, err, wantPK)
		}
	}
	// Both forms sign identically.
	h1 := swHeaders(mustSigner(t, "ed25519", []string{seedForm}, "", "", ""), "m", 1, []byte("x"))
	h2 := swHeaders(mustSigner(t, "ed25519", []string{fullForm}, "", "", ""), "m", 1, []byte("x"))
	if h1.Get("webhook-signature") != h2.Get("webhook-signature") {
		t.Error("seed and 64-byte forms of one key sign differently")
	}
	// A 64-byte key whose public half does not belong to the seed is refused.
	bad := append(bytes.Clone(seed), make([]byte, 32)...)
	if _, err := NewSigner("ed25519", []string{"whsk_" + base64.StdEncoding.EncodeToString(bad)}, "", "", ""); err == nil {
		t.Error("inconsistent 64-byte whsk_ key accepted")
	}
}

func TestSignHMACGitHubExample(t *testing.T) {
	// docs.github.com, "Validating webhook deliveries": test values.
	s := mustSigner(t, "hmac-sha256", []string{"It's a Secret to Everybody"}, "X-Hub-Signature-256", "hex", "sha256=")
	h := http.Header{}
	s.Sign(h, "ignored", 1, []byte("Hello, World!"))
	const want = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got := h.Get("X-Hub-Signature-256"); got != want {
		t.Fatalf("X-Hub-Signature-256 = %q, want %q", got, want)
	}
}

func TestSignHMAC(t *testing.T) {
	secret := "billing-shared-secret"
	body := []byte(`{"invoice":42,"lines":[{"sku":"A","qty":2}]}`)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	mac := m.Sum(nil)

	cases := []struct {
		header, encoding, prefix string
		wantHeader, want         string
	}{
		{"", "", "", "X-Signature", hex.EncodeToString(mac)},
		{"x-billing-signature", "hex", "sha256=", "X-Billing-Signature", "sha256=" + hex.EncodeToString(mac)},
		{"X-Signature", "base64", "", "X-Signature", base64.StdEncoding.EncodeToString(mac)},
		{"X-Sig", "base64", "hmac-sha256:", "X-Sig", "hmac-sha256:" + base64.StdEncoding.EncodeToString(mac)},
	}
	for _, c := range cases {
		s := mustSigner(t, "hmac-sha256", []string{secret}, c.header, c.encoding, c.prefix)
		h := http.Header{}
		// Two calls: the pooled hash state must be reset between uses.
		s.Sign(h, "evt", 1, []byte("something else first"))
		s.Sign(h, "evt", 2, body)
		if got := h.Values(c.wantHeader); len(got) != 1 || got[0] != c.want {
			t.Errorf("%+v: %s = %q, want [%q]", c, c.wantHeader, got, c.want)
		}
		if h.Get("webhook-signature") != "" {
			t.Errorf("%+v: hmac-sha256 also wrote webhook-signature", c)
		}
		if _, ok := h[c.wantHeader]; !ok {
			t.Errorf("%+v: header key %q is not canonical in the map", c, c.wantHeader)
		}
	}
	// The secret is used raw, even when it looks like a whsec_ secret.
	raw := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	m = hmac.New(sha256.New, []byte(raw))
	m.Write(body)
	h := http.Header{}
	mustSigner(t, "hmac-sha256", []string{raw}, "", "", "").Sign(h, "", 0, body)
	if got := h.Get("X-Signature"); got != hex.EncodeToString(m.Sum(nil)) {
		t.Errorf("hmac-sha256 with a whsec_-looking secret: %q is not the HMAC under the raw string", got)
	}
}

func TestSignStandardConcurrent(t *testing.T) {
	secret := newWhsec(t)
	s := mustSigner(t, "standard", []string{secret, "raw-second"}, "", "", "")
	wh, _ := standardwebhooks.NewWebhook(secret)
	now := time.Now().Unix()
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 200 {
				body := []byte(fmt.Sprintf(`{"g":%d,"i":%d}`, g, i))
				id := fmt.Sprintf("evt_%d_%d", g, i)
				if err := wh.Verify(body, swHeaders(s, id, now, body)); err != nil {
					errs <- fmt.Errorf("goroutine %d, call %d: %w", g, i, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewSignerErrors(t *testing.T) {
	cases := []struct {
		name                     string
		scheme                   string
		secrets                  []string
		header, encoding, prefix string
		want                     string
	}{
		{"no secret", "standard", nil, "", "", "", "sign standard: no secret"},
		{"empty secret", "standard", []string{"ok", ""}, "", "", "", "sign standard: secret 2: empty"},
		{"bad whsec", "", []string{"whsec_AAAA", "whsec_not*base64"}, "", "", "", "sign standard: secret 2: invalid whsec_ base64"},
		{"empty whsec", "", []string{"whsec_"}, "", "", "", "sign standard: secret 1: empty whsec_ secret"},
		{"options on standard", "standard", []string{"s"}, "X-Sig", "", "", "apply only to hmac-sha256"},
		{"options on ed25519", "ed25519", []string{swVectorWhsk}, "", "hex", "", "apply only to hmac-sha256"},
		{"no ed key", "ed25519", nil, "", "", "", "sign ed25519: no key"},
		{"whpk for signing", "ed25519", []string{swVectorWhsk, "whpk_" + strings.Repeat("A", 43) + "="}, "", "", "", "sign ed25519: key 2: this is a whpk_ public key"},
		{"whsec for ed25519", "ed25519", []string{"whsec_AAAA"}, "", "", "", "key 1: this is a whsec_ HMAC secret"},
		{"raw for ed25519", "ed25519", []string{"raw"}, "", "", "", "key 1: want a whsk_<base64> key"},
		{"short whsk", "ed25519", []string{"whsk_AAAA"}, "", "", "", "key 1: invalid whsk_ key: 3 bytes"},
		{"hmac two secrets", "hmac-sha256", []string{"a", "b"}, "", "", "", "sign hmac-sha256: want exactly one secret, got 2"},
		{"hmac empty secret", "hmac-sha256", []string{""}, "", "", "", "sign hmac-sha256: secret 1: empty"},
		{"hmac encoding", "hmac-sha256", []string{"a"}, "", "base32", "", `unknown encoding "base32"`},
		{"hmac header", "hmac-sha256", []string{"a"}, "X Sig", "", "", "invalid header name"},
		{"hmac prefix", "hmac-sha256", []string{"a"}, "", "", "sha 256=", "prefix must be printable"},
		{"unknown scheme", "hmac-sha512", []string{"a"}, "", "", "", "sign: unknown scheme (want standard, ed25519 or hmac-sha256)"},
	}
	for _, c := range cases {
		_, err := NewSigner(c.scheme, c.secrets, c.header, c.encoding, c.prefix)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.name, err, c.want)
		}
	}
}

// secretMarker is embedded in every bad secret below; no error may echo it.
const secretMarker = "SEKRETxMARKER"

func badSecrets() []string {
	m := secretMarker
	return []string{
		"whsec_" + m + "*",  // invalid base64
		"whsec_" + m + "!!", // invalid base64
		"whsk_" + m,         // wrong length
		"whsk_" + m + "*",   // invalid base64
		"whpk_" + m,         // public key where a secret key is wanted
		"whsec_" + m + "/",  // whsec_ where a whsk_ is wanted
		m,                   // raw where a whsk_ is wanted
		"whsk_" + base64.StdEncoding.EncodeToString(append([]byte(m+"_seed_32_bytes_long!!"), make([]byte, 30)...)), // 64-byte, inconsistent
		"whpk_" + m + "==", // bad public key
		" whsk_" + m + " ", // surrounding space
	}
}

func TestSignErrorsNeverContainSecret(t *testing.T) {
	var n int
	for _, bad := range badSecrets() {
		calls := []func() error{
			func() error { _, err := NewSigner("standard", []string{"fine", bad}, "", "", ""); return err },
			func() error { _, err := NewSigner("ed25519", []string{bad}, "", "", ""); return err },
			func() error { _, err := NewSigner("hmac-sha256", []string{bad, bad}, "", "", ""); return err },
			func() error { _, err := NewSigner(bad, []string{bad}, "", "", ""); return err },
			func() error { _, err := NewSigner(strings.ToLower(bad), []string{bad}, "", "", ""); return err },
			func() error { _, err := publicKey(bad); return err },
			func() error { return runKeyPublic(bad, nil, &bytes.Buffer{}) },
			func() error { return runKeyPublic("-", strings.NewReader(bad+"\n"), &bytes.Buffer{}) },
		}
		for i, call := range calls {
			err := call()
			if err == nil {
				continue
			}
			n++
			if msg := strings.ToUpper(err.Error()); strings.Contains(msg, secretMarker) || strings.Contains(msg, "SEKRET") {
				t.Errorf("call %d with a bad secret: error %q contains the secret", i, err)
			}
		}
	}
	if n < 30 {
		t.Fatalf("only %d calls failed; the bad secrets are not bad enough to test anything", n)
	}
}

func TestSignerFormattingRedacted(t *testing.T) {
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte(secretMarker+"-key-material"))
	raw := secretMarker + "-raw"
	whsk, _, _ := generateKeyPair(rand.Reader)
	signers := []Signer{
		mustSigner(t, "standard", []string{secret, raw}, "", "", ""),
		mustSigner(t, "ed25519", []string{whsk}, "", "", ""),
		mustSigner(t, "hmac-sha256", []string{raw}, "", "", ""),
	}
	seedB64 := strings.TrimPrefix(whsk, "whsk_")
	for _, s := range signers {
		s.Sign(http.Header{}, "id", 1, []byte("warm the pool"))
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
			out := fmt.Sprintf(verb, s)
			if strings.Contains(out, secretMarker) || strings.Contains(strings.ToUpper(out), strings.ToUpper(hex.EncodeToString([]byte(secretMarker)))) || strings.Contains(out, seedB64) {
				t.Errorf("%T formatted with %s shows key material: %s", s, verb, out)
			}
		}
	}
}

func benchSign(b *testing.B, s Signer) {
	body := bytes.Repeat([]byte("a"), 1024)
	id := "evt_01JD4Z6W3V8Q5T2M9N7K4H1G0F"
	ts := time.Now().Unix()
	h := http.Header{}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		s.Sign(h, id, ts, body)
	}
}

func BenchmarkSignStandard1KB(b *testing.B) {
	benchSign(b, mustSigner(b, "standard", []string{newWhsec(b)}, "", "", ""))
}

func BenchmarkSignStandard1KBTwoSecrets(b *testing.B) {
	benchSign(b, mustSigner(b, "standard", []string{newWhsec(b), newWhsec(b)}, "", "", ""))
}

func BenchmarkSignEd25519_1KB(b *testing.B) {
	whsk, _, err := generateKeyPair(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	benchSign(b, mustSigner(b, "ed25519", []string{whsk}, "", "", ""))
}

func BenchmarkSignHMACHex1KB(b *testing.B) {
	benchSign(b, mustSigner(b, "hmac-sha256", []string{"billing-secret"}, "X-Signature", "hex", "sha256="))
}

// BenchmarkSignStandard1KBHMACNew is the alternative to the pooled hash
// state: hmac.New per call (kept to justify the pool).
func BenchmarkSignStandard1KBHMACNew(b *testing.B) {
	key, _ := symmetricKey(newWhsec(b))
	body := bytes.Repeat([]byte("a"), 1024)
	id := "evt_01JD4Z6W3V8Q5T2M9N7K4H1G0F"
	ts := time.Now().Unix()
	h := http.Header{}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		m := hmac.New(sha256.New, key)
		m.Write(appendSignedContent(nil, id, ts, nil))
		m.Write(body)
		h[hdrWebhookSignature] = []string{"v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))}
	}
}

// ValidHeaderName is the one rule every config check uses for header names;
// it must agree with what net/http accepts when it sends the request.
func TestValidHeaderName(t *testing.T) {
	for _, s := range []string{"X-Signature", "x-hub-signature-256", "A", "!#$%&'*+-.^_`|~09az"} {
		if !ValidHeaderName(s) {
			t.Errorf("ValidHeaderName(%q) = false, want true", s)
		}
	}
	for _, s := range []string{"", "X Sig", "X-Sig:", "X-Sig\r\n", "Ünicode", "(x)", "a\x00b", "a\x7fb"} {
		if ValidHeaderName(s) {
			t.Errorf("ValidHeaderName(%q) = true, want false", s)
		}
	}
	for c := range 256 {
		s := "X" + string([]byte{byte(c)})
		if got, want := ValidHeaderName(s), httpguts.ValidHeaderFieldName(s); got != want {
			t.Errorf("ValidHeaderName(%q) = %v, net/http's rule says %v", s, got, want)
		}
	}
}
