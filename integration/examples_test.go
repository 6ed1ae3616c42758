package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestExamples does for every examples/*/Caddyfile what `caddy validate`
// does: adapt it, then load and provision every module without starting
// anything, with the environment variables it names set to dummy values
// (PEM files for the ones that name files). Each example has a README.
func TestExamples(t *testing.T) {
	paths, err := filepath.Glob("../examples/*/Caddyfile")
	if err != nil || len(paths) < 9 {
		t.Fatalf("examples: %v %v", paths, err)
	}
	certFile, keyFile := writeTestCert(t)
	files := map[string]string{"PARTNER_CA": certFile, "HOOKGATE_CLIENT_CERT": certFile, "HOOKGATE_CLIENT_KEY": keyFile}
	envRef := regexp.MustCompile(`\{env\.([A-Za-z0-9_]+)\}`)
	for _, p := range paths {
		name := filepath.Base(filepath.Dir(p))
		t.Run(name, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), "README.md")); err != nil {
				t.Errorf("no README.md: %v", err)
			}
			src, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range envRef.FindAllStringSubmatch(string(src), -1) {
				v := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
				switch {
				case files[m[1]] != "":
					v = files[m[1]]
				case m[1] == "SLACK_WEBHOOK_URL":
					v = "https://hooks.slack.example/services/T0/B0/x"
				}
				t.Setenv(m[1], v)
			}
			out, warns, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": p})
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			for _, w := range warns {
				t.Errorf("adapt warning: %s", w.String())
			}
			var cfg caddy.Config
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatal(err)
			}
			if err := caddy.Validate(&cfg); err != nil {
				t.Fatalf("validate: %v", err)
			}
		})
	}
}

// writeTestCert writes a self-signed certificate and its key as PEM.
func writeTestCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hookgate-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
