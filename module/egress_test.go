package module

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/hookgate/hookgate/module/egress"
)

// provisionApp provisions an App without starting it.
func provisionApp(t *testing.T, a *App) error {
	t.Helper()
	t.Cleanup(func() { a.Cleanup() })
	return a.Provision(caddy.Context{Context: context.Background()})
}

// TestEgressProvision: every provisioned route sends through the client
// of its policy, routes of one policy share a client, and load errors
// name the route. (Which policy a choice gets is the egress package's
// own test.)
func TestEgressProvision(t *testing.T) {
	route := func(name string, inline *egress.Policy) *Route {
		return &Route{Topics: []string{"*"}, URL: "https://partner.example/x", Egress: name, EgressPolicy: inline}
	}
	t.Run("undefined policy", func(t *testing.T) {
		a := &App{
			Storage: t.TempDir(),
			Egress:  map[string]*egress.Policy{"partner": {}},
			Routes:  map[string]*Route{"erp": route("parnter", nil)},
		}
		err := provisionApp(t, a)
		if err == nil || !strings.Contains(err.Error(), `route erp: egress policy "parnter" is not defined (defined: partner)`) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("which policy", func(t *testing.T) {
		a := &App{
			Storage: t.TempDir(),
			Egress: map[string]*egress.Policy{
				"default": {Allow: []string{"10.0.0.0/8"}},
				"partner": {Allow: []string{"10.20.0.0/16"}},
			},
			Routes: map[string]*Route{
				"a": route("", nil),
				"b": route("partner", nil),
				"c": route("", &egress.Policy{Allow: []string{"192.168.0.0/16"}}),
				"d": route("default", nil),
			},
		}
		if err := provisionApp(t, a); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"a": `egress policy "default"`,
			"b": `egress policy "partner"`,
			"c": `inline egress policy of route "c"`,
			"d": `egress policy "default"`,
		}
		for name, l := range want {
			r := a.routes[name]
			if r.client == nil || r.egress == nil || r.client.HTTPClient != r.egress.HTTP() {
				t.Fatalf("route %s does not send through its egress client: it would deliver unchecked", name)
			}
			if r.egress.Label() != l {
				t.Errorf("route %s uses %s, want %s", name, r.egress.Label(), l)
			}
		}
		if a.routes["a"].client != a.routes["d"].client {
			t.Errorf("two routes of one policy got two clients")
		}
		if len(a.egressKeys) != 3 {
			t.Errorf("%d egress clients acquired, want 3", len(a.egressKeys))
		}
	})
	t.Run("built-in", func(t *testing.T) {
		a := &App{Storage: t.TempDir(), Routes: map[string]*Route{"a": route("", nil)}}
		if err := provisionApp(t, a); err != nil {
			t.Fatal(err)
		}
		c := a.routes["a"].egress
		if c.Label() != "built-in default egress policy" || c.Check(netip.MustParseAddr("127.0.0.1")) == nil {
			t.Errorf("built-in policy %q lets loopback through", c.Label())
		}
	})
}
