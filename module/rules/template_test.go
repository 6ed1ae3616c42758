package rules

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/hookgate/hookgate/persist"
)

func TestTemplateExpand(t *testing.T) {
	t.Setenv("HOOKGATE_TMPL_TEST", "s3cret")
	t.Setenv("HOOKGATE_TMPL_BASE", "https://api.example.com")
	ev := &persist.Event{ID: "evt_1", Type: "task.done", Source: "/events", Time: time.Date(2026, 11, 23, 10, 0, 0, 5, time.FixedZone("x", 3600)),
		Data: []byte(`{"tenant":"a/b c","n":1.5,"ok":true,"items":[{"sku":"S-1"}],"obj":{"k":"v"},"nul":null,"sneaky":"{env.HOOKGATE_TMPL_TEST}","host":"a-b.example","port":"8080","atport":"18101@127.0.0.2:18103","athost":"evil@127.0.0.1:18102","empty":"","dots":"..","dot":".","three":"...","hostport":"api.example.com:8443","under":"my_tenant","ip6":"::1"}`)}
	repl := caddy.NewReplacer()
	tests := []struct {
		tmpl  string
		isURL bool
		want  string
		err   string
	}{
		{"https://x.example/static", true, "https://x.example/static", ""},
		{"{event.id} {event.type} {event.source} {event.time}", false, "evt_1 task.done /events 2026-11-23T09:00:00.000000005Z", ""},
		{"https://x.example/{event.data.tenant}?t={event.data.tenant}", true, "https://x.example/a%2Fb%20c?t=a%2Fb+c", ""},
		{"{event.data.tenant}", false, "a/b c", ""},
		{"{event.data.n}/{event.data.ok}/{event.data.items[0].sku}/{event.data.items.0.sku}", false, "1.5/true/S-1/S-1", ""},
		{"{event.data.obj}", false, `{"k":"v"}`, ""},
		// One pass: a value from the event is never expanded again.
		{"{event.data.sneaky}", false, "{env.HOOKGATE_TMPL_TEST}", ""},
		{"Bearer {env.HOOKGATE_TMPL_TEST}", false, "Bearer s3cret", ""},
		{"{nope.unknown}", false, "{nope.unknown}", ""},
		{"a{ b}c{", false, "a{ b}c{", ""},
		{"{event.data.missing}", false, "", `no field "missing"`},
		{"{event.data.items[3].sku}", false, "", `no element "items.3"`},
		{"{event.data.nul}", false, "", "is null"},
		// In the host or port a value must be one as it is: neither
		// userinfo nor another port can ride in on event data.
		{"http://{event.data.host}:{event.data.port}/x", true, "http://a-b.example:8080/x", ""},
		{"http://127.0.0.1:{event.data.atport}/x", true, "", "in the host or port"},
		{"http://{event.data.athost}/x", true, "", "in the host or port"},
		{"http://{event.data.tenant}/x", true, "", "in the host or port"},
		{"https://{event.data.empty}/x", true, "", "in the host or port"},
		// A whole segment of dots would climb the receiver's path.
		{"https://x.example/t/{event.data.dots}/hook", true, "", `".." cannot stand in a URL path`},
		{"https://x.example/t/{event.data.dot}", true, "", `"." cannot stand in a URL path`},
		{"https://x.example/t/{event.data.dots}x", true, "", `cannot stand in a URL path`},
		{"https://x.example/t?d={event.data.dots}", true, "https://x.example/t?d=..", ""},
		{"https://x.example/t/{event.data.three}", true, "https://x.example/t/...", ""},
		// Host values that are hosts: with a port, an underscore, IPv6.
		{"https://{event.data.hostport}/", true, "https://api.example.com:8443/", ""},
		{"https://{event.data.under}.example.com/", true, "https://my_tenant.example.com/", ""},
		{"http://[{event.data.ip6}]:8080/x", true, "http://[::1]:8080/x", ""},
		// With scheme and host from a global placeholder, event values are
		// in the path: '@' and ':' are escaped, so they cannot make a host.
		{"{env.HOOKGATE_TMPL_BASE}{event.data.athost}", true, "https://api.example.comevil%40127.0.0.1%3A18102", ""},
		{"{env.HOOKGATE_TMPL_BASE}:{event.data.atport}/hook", true, "https://api.example.com:18101%40127.0.0.2%3A18103/hook", ""},
	}
	for _, tc := range tests {
		tm, err := ParseTemplate(tc.tmpl, tc.isURL)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tc.tmpl, err)
			continue
		}
		got, err := tm.Expand(NewEvent(ev), repl)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: got %q, %v; want an error with %q", tc.tmpl, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%q: got %q, %v; want %q", tc.tmpl, got, err, tc.want)
		}
	}
}

// A {file.*} Caddy cannot read has a value of nil: the expansion fails
// with ErrNoValue (not "<nil>" or "" in a secret or a host), and names
// the placeholder.
func TestTemplateUnreadableFile(t *testing.T) {
	missing := t.TempDir() + "/gone"
	ev := NewEvent(&persist.Event{ID: "evt_1", Data: []byte(`{}`)})
	for _, tc := range []struct {
		tmpl  string
		isURL bool
	}{
		{"Bearer {file." + missing + "}", false},
		{"https://x.example/{file." + missing + "}/hook", true},
	} {
		tm, err := ParseTemplate(tc.tmpl, tc.isURL)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tm.Expand(ev, caddy.NewReplacer())
		if !errors.Is(err, ErrNoValue) || !strings.Contains(err.Error(), "{file."+missing+"}") {
			t.Errorf("%q: got %q, %v; want ErrNoValue naming the placeholder", tc.tmpl, got, err)
		}
	}
}

func TestParseTemplateErrors(t *testing.T) {
	for tmpl, want := range map[string]string{
		"{event.nope}":      "unknown placeholder {event.nope}",
		"x/{event.data.}":   "unknown placeholder",
		"{event.data.a..b}": "empty step",
		"{event.data.[0]}":  "empty step",
	} {
		if _, err := ParseTemplate(tmpl, true); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTemplate(%q) = %v, want an error with %q", tmpl, err, want)
		}
	}
}

func TestTemplatePrefixAndUsesEvent(t *testing.T) {
	tests := []struct {
		tmpl, prefix string
		uses         bool
	}{
		{"https://x.example/a", "https://x.example/a", false},
		{"https://x.example/{env.X}/{event.id}", "https://x.example/", true},
		{"https://x{ y}/{event.data.k}", "https://x{ y}/", true},
		{"{env.SLACK_URL}", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		tm, err := ParseTemplate(tc.tmpl, true)
		if err != nil {
			t.Fatal(err)
		}
		if tm.Prefix() != tc.prefix || tm.UsesEvent() != tc.uses {
			t.Errorf("%q: Prefix %q UsesEvent %v, want %q %v", tc.tmpl, tm.Prefix(), tm.UsesEvent(), tc.prefix, tc.uses)
		}
	}
}
