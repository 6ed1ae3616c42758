package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func TestKeyGenerate(t *testing.T) {
	whsk, whpk, err := generateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(whsk, "whsk_"))
	if !strings.HasPrefix(whsk, "whsk_") || err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("whsk %.8q…: %v, %d bytes", whsk, err, len(seed))
	}
	pub, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(whpk, "whpk_"))
	if !strings.HasPrefix(whpk, "whpk_") || err != nil {
		t.Fatalf("whpk %q: %v", whpk, err)
	}
	want := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	if !bytes.Equal(pub, want) {
		t.Fatal("whpk is not the public key of whsk")
	}
	whsk2, _, _ := generateKeyPair(rand.Reader)
	if whsk2 == whsk {
		t.Fatal("two generated keys are equal")
	}
	if _, _, err := generateKeyPair(bytes.NewReader(nil)); err == nil {
		t.Fatal("no error from an empty random source")
	}
}

func TestKeySecret(t *testing.T) {
	s, err := generateSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
	if !strings.HasPrefix(s, "whsec_") || err != nil || len(key) < 24 || len(key) > 64 {
		t.Fatalf("secret: %v, %d bytes (Standard Webhooks wants 24 to 64)", err, len(key))
	}
	// Usable by the reference library as is.
	if _, err := standardwebhooks.NewWebhook(s); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSigner("standard", []string{s}, "", "", ""); err != nil {
		t.Fatal(err)
	}
	if s2, _ := generateSecret(rand.Reader); s2 == s {
		t.Fatal("two generated secrets are equal")
	}
	if _, err := generateSecret(bytes.NewReader(make([]byte, 5))); err == nil {
		t.Fatal("no error from a short random source")
	}
}

func TestKeyPublicCommand(t *testing.T) {
	whsk, whpk, _ := generateKeyPair(rand.Reader)
	for name, c := range map[string]struct {
		arg   string
		stdin string
	}{
		"argument":         {whsk, ""},
		"stdin":            {"-", whsk + "\n"},
		"stdin crlf":       {"-", whsk + "\r\n"},
		"argument spacing": {" " + whsk + " ", ""},
	} {
		var out bytes.Buffer
		if err := runKeyPublic(c.arg, strings.NewReader(c.stdin), &out); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if out.String() != whpk+"\n" {
			t.Errorf("%s: printed %q, want %q", name, out.String(), whpk+"\n")
		}
	}
	for name, c := range map[string]struct{ arg, stdin, want string }{
		"empty stdin": {"-", "", "no key given"},
		"whpk":        {whpk, "", "this is a whpk_ public key"},
		"whsec":       {newWhsec(t), "", "this is a whsec_ HMAC secret"},
		"huge stdin":  {"-", strings.Repeat("A", maxKeyInput+1), "input too long"},
	} {
		var out bytes.Buffer
		err := runKeyPublic(c.arg, strings.NewReader(c.stdin), &out)
		if err == nil || !strings.Contains(err.Error(), c.want) || out.Len() != 0 {
			t.Errorf("%s: err = %v, output %q; want an error containing %q and no output", name, err, out.String(), c.want)
		}
	}
	if err := runKeyPublic("-", errReader{}, &bytes.Buffer{}); err == nil {
		t.Error("stdin read error not reported")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

func TestKeyGenerateAndSecretOutputFile(t *testing.T) {
	dir := t.TempDir()

	var out bytes.Buffer
	if err := runKeyGenerate(rand.Reader, &out, ""); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "whsk_") || !strings.HasPrefix(lines[1], "whpk_") {
		t.Fatalf("generate printed %q, want a whsk_ line and a whpk_ line", out.String())
	}
	if pk, err := publicKey(lines[0]); err != nil || pk != lines[1] {
		t.Fatalf("printed public key does not belong to the printed key")
	}

	out.Reset()
	keyFile := filepath.Join(dir, "erp.whsk")
	if err := runKeyGenerate(rand.Reader, &out, keyFile); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "whsk_") {
		t.Fatalf("with --output the secret key is still printed: %q", out.String())
	}
	if pk, err := publicKey(string(data)); err != nil || pk+"\n" != out.String() {
		t.Fatalf("file key's public key %q (%v) is not the printed %q", pk, err, out.String())
	}
	if fi, _ := os.Stat(keyFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if err := runKeyGenerate(rand.Reader, &out, keyFile); err == nil {
		t.Fatal("existing key file overwritten")
	}
	if again, _ := os.ReadFile(keyFile); !bytes.Equal(again, data) {
		t.Fatal("existing key file changed")
	}

	out.Reset()
	secFile := filepath.Join(dir, "erp.whsec")
	if err := runKeySecret(rand.Reader, &out, secFile); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Fatalf("secret --output printed %q", out.String())
	}
	data, _ = os.ReadFile(secFile)
	if _, err := NewSigner("standard", []string{strings.TrimSuffix(string(data), "\n")}, "", "", ""); err != nil || !strings.HasPrefix(string(data), "whsec_") {
		t.Fatalf("secret file %q… unusable: %v", string(data)[:6], err)
	}
	if err := runKeySecret(rand.Reader, &out, secFile); err == nil {
		t.Fatal("existing secret file overwritten")
	}
}

// The command is registered with Caddy and its subcommands run through cobra
// as `caddy webhooks-key …` would run them.
func TestKeyCommandRegistered(t *testing.T) {
	c, ok := caddycmd.Commands()["webhooks-key"]
	if !ok {
		t.Fatal("webhooks-key is not registered")
	}
	run := func(stdin string, args ...string) (string, error) {
		root := &cobra.Command{Use: "webhooks-key", SilenceUsage: true, SilenceErrors: true}
		c.CobraFunc(root)
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetIn(strings.NewReader(stdin))
		root.SetArgs(args)
		err := root.Execute()
		return out.String(), err
	}

	// Under caddy, as it runs: a misspelt subcommand fails.
	caddyRoot := &cobra.Command{Use: "caddy", SilenceErrors: true}
	keyCmd := &cobra.Command{Use: "webhooks-key"}
	c.CobraFunc(keyCmd)
	caddyRoot.AddCommand(keyCmd)
	caddyRoot.SetOut(io.Discard)
	caddyRoot.SetArgs([]string{"webhooks-key", "bogus"})
	if err := caddyRoot.Execute(); err == nil || !strings.Contains(err.Error(), `unknown command "bogus"`) {
		t.Errorf("caddy webhooks-key bogus: %v, want an unknown command error", err)
	}

	out, err := run("", "generate")
	lines := strings.Fields(out)
	if err != nil || len(lines) != 2 || !strings.HasPrefix(lines[0], "whsk_") || !strings.HasPrefix(lines[1], "whpk_") {
		t.Fatalf("generate: %q, %v", out, err)
	}
	pub, err := run(lines[0]+"\n", "public", "-")
	if err != nil || pub != lines[1]+"\n" {
		t.Fatalf("public -: %q, %v; want %q", pub, err, lines[1])
	}
	pub, err = run("", "public", lines[0])
	if err != nil || pub != lines[1]+"\n" {
		t.Fatalf("public KEY: %q, %v", pub, err)
	}
	if _, err := run("", "public"); err == nil {
		t.Fatal("public without an argument succeeds")
	}
	sec, err := run("", "secret")
	if err != nil || !strings.HasPrefix(sec, "whsec_") {
		t.Fatalf("secret: %q, %v", sec, err)
	}
	file := filepath.Join(t.TempDir(), "k")
	out, err = run("", "generate", "--output", file)
	if err != nil || !strings.HasPrefix(out, "whpk_") || strings.Contains(out, "whsk_") {
		t.Fatalf("generate --output: %q, %v", out, err)
	}

	// The generated key signs deliveries that verify with the printed key.
	key, _ := os.ReadFile(file)
	s := mustSigner(t, "ed25519", []string{string(key)}, "", "", "")
	v := mustVerifier(t, "standard", []string{strings.TrimSpace(out)}, "", "", "", 0)
	now := time.Now()
	h := http.Header{}
	h.Set("webhook-id", "evt_cmd")
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	s.Sign(h, "evt_cmd", now.Unix(), []byte("{}"))
	if err := v.Verify(h, []byte("{}"), now); err != nil {
		t.Fatalf("signature by the generated key fails with its printed public key: %v", err)
	}
}
