package integration

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/hookgate/hookgate/module"
	"github.com/hookgate/hookgate/module/console"
	"github.com/hookgate/hookgate/module/egress"
	"github.com/hookgate/hookgate/module/ingest"
)

// Adapt tests, in the manner of Caddy's caddytest/integration: each file
// in caddyfile_adapt/ holds a Caddyfile, a line of ten dashes, and the
// expectation.
//
//   - name.caddyfiletest: the expectation is the adapted JSON exactly as
//     `caddy adapt --pretty` prints it (json.Indent with a tab).
//   - name.error.caddyfiletest: adapting must fail, and the expectation is
//     a substring of the error. It must name the file and line
//     ("Caddyfile:7"), since every bad line has to say where it is.
//
// The Caddyfile is adapted under the name "Caddyfile", with its
// surrounding blank lines trimmed, so line numbers count from the first
// line of the test file.
//
// After editing the syntax, `go test ./integration -run TestAdapt
// -adapt.update` rewrites the JSON expectations; review the diff.

var adaptUpdate = flag.Bool("adapt.update", false, "rewrite the JSON expectations of caddyfile_adapt/*.caddyfiletest")

const (
	adaptDir       = "caddyfile_adapt"
	adaptSeparator = "\n----------\n"
	adaptFilename  = "Caddyfile"
)

// fileLine is what every error expectation must contain.
var fileLine = regexp.MustCompile(regexp.QuoteMeta(adaptFilename) + `:\d+`)

type adaptCase struct {
	name      string // file name
	caddyfile string
	expected  string
	wantErr   bool
}

func loadAdaptCases(t *testing.T) []adaptCase {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(adaptDir, "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no test files in %s", adaptDir)
	}
	var cases []adaptCase
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(data), "\r\n", "\n")
		caddyfile, expected, ok := strings.Cut(text, adaptSeparator)
		if !ok {
			t.Fatalf("%s: no %q line between the Caddyfile and the expectation", p, strings.TrimSpace(adaptSeparator))
		}
		cases = append(cases, adaptCase{
			name:      filepath.Base(p),
			caddyfile: strings.TrimSpace(caddyfile) + "\n",
			expected:  strings.TrimSpace(expected),
			wantErr:   strings.HasSuffix(p, ".error.caddyfiletest"),
		})
	}
	return cases
}

func adapt(c adaptCase) ([]byte, []caddyconfig.Warning, error) {
	return caddyconfig.GetAdapter("caddyfile").Adapt([]byte(c.caddyfile), map[string]any{
		"filename": adaptFilename,
	})
}

func TestAdaptCaddyfile(t *testing.T) {
	for _, c := range loadAdaptCases(t) {
		t.Run(c.name, func(t *testing.T) {
			out, warnings, err := adapt(c)
			for _, w := range warnings {
				// Caddy warns about unformatted input, among other things;
				// the test files are to be as clean as users' configs.
				t.Errorf("warning: %s:%d: %s: %s", w.File, w.Line, w.Directive, w.Message)
			}

			if c.wantErr {
				if !fileLine.MatchString(c.expected) {
					t.Fatalf("expectation %q names no %s:<line>", c.expected, adaptFilename)
				}
				if err == nil {
					t.Fatalf("adapt succeeded, want an error containing %q; got:\n%s", c.expected, out)
				}
				if !strings.Contains(err.Error(), c.expected) {
					t.Fatalf("error:\n\t%v\nwant it to contain:\n\t%s", err, c.expected)
				}
				return
			}

			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			got := pretty.String()

			if *adaptUpdate && got != c.expected {
				data := strings.TrimSpace(c.caddyfile) + adaptSeparator + got + "\n"
				if err := os.WriteFile(filepath.Join(adaptDir, c.name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("rewrote %s", c.name)
				return
			}
			if got != c.expected {
				t.Errorf("adapted JSON differs (-want +got):\n%s", lineDiff(c.expected, got))
			}

			checkStrict(t, out)
		})
	}
}

// checkStrict decodes our parts of the adapted JSON into the module
// types with unknown fields disallowed, so that a key the parser writes
// but no field reads (a typo, a renamed tag) fails here rather than being
// ignored at load.
func checkStrict(t *testing.T, out []byte) {
	t.Helper()
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if raw, ok := cfg.Apps["webhooks"]; ok {
		strictDecode(t, raw, new(module.App))
	}
	for _, h := range findHandlers(t, cfg.Apps["http"], "webhook_ingest") {
		strictDecode(t, h, new(ingest.Handler))
	}
	for _, h := range findHandlers(t, cfg.Apps["http"], "webhook_console") {
		strictDecode(t, h, new(console.Handler))
	}
}

func strictDecode(t *testing.T, raw []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Errorf("decoding into %T: %v\n%s", v, err, raw)
	}
}

// findHandlers returns, anywhere in raw, the objects whose "handler" is
// name, without the "handler" key (which Caddy consumes to pick the
// module).
func findHandlers(t *testing.T, raw json.RawMessage, name string) []json.RawMessage {
	t.Helper()
	if raw == nil {
		return nil
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		t.Fatal(err)
	}
	var found []json.RawMessage
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == name {
				rest := make(map[string]any, len(v))
				for k, x := range v {
					if k != "handler" {
						rest[k] = x
					}
				}
				b, err := json.Marshal(rest)
				if err != nil {
					t.Fatal(err)
				}
				found = append(found, b)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(tree)
	return found
}

// TestAdaptCoversEveryField checks that every JSON field of the config
// types appears in at least one expected output, that is, that the
// Caddyfile can reach it. A field added to package module fails here
// until it gets a Caddyfile form and an adapt test.
func TestAdaptCoversEveryField(t *testing.T) {
	seen := make(map[string]bool)
	for _, c := range loadAdaptCases(t) {
		if c.wantErr {
			continue
		}
		// Only our subtrees count: Caddy's own config has keys such as
		// "routes" and "timeout" too.
		var cfg struct {
			Apps map[string]json.RawMessage `json:"apps"`
		}
		if err := json.Unmarshal([]byte(c.expected), &cfg); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		ours := findHandlers(t, cfg.Apps["http"], "webhook_ingest")
		ours = append(ours, findHandlers(t, cfg.Apps["http"], "webhook_console")...)
		if raw, ok := cfg.Apps["webhooks"]; ok {
			ours = append(ours, raw)
		}
		for _, raw := range ours {
			var tree any
			if err := json.Unmarshal(raw, &tree); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			collectKeys(tree, seen)
		}
	}

	types := []any{module.App{}, module.Route{}, module.RetryPolicy{}, ingest.Handler{}, ingest.Auth{},
		module.SignConfig{}, ingest.VerifyConfig{}, ingest.AuthHeader{},
		egress.Policy{}, egress.TLS{}, console.Handler{}}
	var missing []string
	for _, v := range types {
		typ := reflect.TypeOf(v)
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || tag == "-" {
				continue
			}
			if tag == "" {
				tag = f.Name
			}
			if !seen[tag] {
				missing = append(missing, fmt.Sprintf("%s.%s (%q)", typ.Name(), f.Name, tag))
			}
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("no adapt test produces %s", m)
	}
}

func collectKeys(v any, seen map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			seen[k] = true
			collectKeys(x, seen)
		}
	case []any:
		for _, x := range v {
			collectKeys(x, seen)
		}
	}
}

// lineDiff is a minimal line diff (longest common subsequence), enough
// to see what changed in a few hundred lines of JSON.
func lineDiff(want, got string) string {
	a, b := strings.Split(want, "\n"), strings.Split(got, "\n")
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var sb strings.Builder
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			fmt.Fprintf(&sb, "  %s\n", a[i])
			i++
			j++
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&sb, "+ %s\n", b[j])
			j++
		default:
			fmt.Fprintf(&sb, "- %s\n", a[i])
			i++
		}
	}
	return sb.String()
}

// TestAdaptErrorsHideSecrets checks that a malformed line holding a
// secret fails without quoting the secret: adapt errors end up in logs
// and CI output.
func TestAdaptErrorsHideSecrets(t *testing.T) {
	const secret = "s3cr3t-token"
	route := func(line string) string {
		return "{\n\twebhooks {\n\t\troute erp {\n\t\t\ttopics a\n\t\t\t" +
			line + "\n\t\t}\n\t}\n}\n"
	}
	ingest := func(line string) string {
		return "localhost {\n\twebhook_ingest {\n\t\t" + line + "\n\t}\n}\n"
	}
	for name, caddyfile := range map[string]string{
		"header with three args": route("header Authorization Bearer " + secret),
		"header with a block":    route("header Authorization " + secret + " {\n\t\t\t\tx\n\t\t\t}"),
		"url with two args":      route("url https://example.com/ " + secret),
		"description two args":   route("description " + secret + " " + secret),
		"bearer with a block":    ingest("auth bearer " + secret + " {\n\t\t\tx\n\t\t}"),
		"proxy not http":         route("egress {\n\t\t\t\tproxy socks5://u:" + secret + "@proxy:1080\n\t\t\t}"),
		"proxy two args":         route("egress {\n\t\t\t\tproxy http://u:" + secret + "@proxy:3128 x\n\t\t\t}"),

		"sign with a block":         route("sign " + secret + " {\n\t\t\t\tx\n\t\t\t}"),
		"sign ed25519 with a block": route("sign ed25519 " + secret + " {\n\t\t\t\tx\n\t\t\t}"),
		"sign mixed schemes":        route("sign " + secret + "\n\t\t\tsign ed25519 " + secret),
		"sign unknown scheme":       route("sign hmac-sha1 " + secret),
		"sign bad encoding":         route("sign hmac-sha256 " + secret + " {\n\t\t\t\tencoding hax\n\t\t\t}"),
		"sign unknown block option": route("sign hmac-sha256 " + secret + " {\n\t\t\t\tx\n\t\t\t}"),

		"verify without scheme":      ingest("verify " + secret),
		"verify without scheme, two": ingest("verify " + secret + " " + secret),
		"verify unknown scheme":      ingest("verify rsa " + secret),
		"verify twice":               ingest("verify standard " + secret + "\n\t\tverify standard " + secret),
		"verify wrong block option":  ingest("verify standard " + secret + " {\n\t\t\tencoding hex\n\t\t}"),
		"verify zero tolerance":      ingest("verify standard " + secret + " {\n\t\t\ttolerance 0\n\t\t}"),
		"verify option on the line":  ingest("verify hmac-sha256 " + secret + " header X-Sig"),
		"verify bad whsec":           ingest("verify standard whsec_!!" + secret),
		"verify bad whpk":            ingest("verify standard whpk_" + secret),
		"verify stripe header":       ingest("verify stripe " + secret + " {\n\t\t\theader X-Sig\n\t\t}"),
		"verify slack option inline": ingest("verify slack " + secret + " tolerance 1m"),
		"id_field empty key":         ingest("topic a\n\t\tid_field data..id\n\t\tverify slack " + secret),
		"sign option on the line":    route("sign hmac-sha256 " + secret + " prefix sha256="),
		"sign bad whsk":              route("sign ed25519 whsk_" + secret),
		"sign hmac two secrets":      route("sign hmac-sha256 " + secret + "\n\t\t\tsign hmac-sha256 " + secret),

		"auth without scheme":       ingest("auth " + secret),
		"auth header without value": ingest("auth header " + secret),
		"auth header with a block":  ingest("auth header X-Api-Key " + secret + " {\n\t\t\tx\n\t\t}"),
		"auth header twice":         ingest("auth header X-Api-Key " + secret + "\n\t\tauth header X-Api-Key " + secret),
		"auth header bad name":      ingest("auth header X:Key " + secret),
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := adapt(adaptCase{caddyfile: caddyfile})
			if err == nil {
				t.Fatalf("adapt succeeded, want an error for:\n%s", caddyfile)
			}
			if !fileLine.MatchString(err.Error()) {
				t.Errorf("error names no %s:<line>: %v", adaptFilename, err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error quotes the secret: %v", err)
			}
		})
	}
}
