package module

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Everything here dials loopback only; public addresses appear in the
// address table, which checks and never connects.

func testPolicy(t testing.TB, cfg EgressPolicy) *egressPolicy {
	t.Helper()
	p, _, err := compileEgress("test policy", &cfg)
	if err != nil {
		t.Fatalf("compileEgress: %v", err)
	}
	return p
}

func TestEgressAddressClasses(t *testing.T) {
	type policy struct {
		name  string
		allow []string
		deny  []string
	}
	var (
		builtin   = policy{name: "built-in"}
		private10 = policy{name: "allow 10/8", allow: []string{"10.0.0.0/8"}}
		all       = policy{name: "allow all", allow: []string{"0.0.0.0/0", "::/0"}}
		linkLocal = policy{name: "allow link-local", allow: []string{"169.254.0.0/16", "fe80::/10"}}
		metadata  = policy{name: "allow metadata", allow: []string{"169.254.169.254/32"}}
		carve     = policy{name: "allow 10.20/16 deny 10.20.9/24", allow: []string{"10.20.0.0/16"}, deny: []string{"10.20.9.0/24"}}
		denyPub   = policy{name: "deny 8.8.8.0/24", deny: []string{"8.8.8.0/24"}}
		mapped    = policy{name: "allow written mapped", allow: []string{"::ffff:10.0.0.0/104"}}
		ula       = policy{name: "allow fc00::/7", allow: []string{"fc00::/7"}}
	)
	tests := []struct {
		p    policy
		addr string
		rule string // "" when allowed, else a substring of the refusal
	}{
		// Public addresses pass (checked, never dialled).
		{builtin, "8.8.8.8", ""},
		{builtin, "1.1.1.1", ""},
		{builtin, "2606:4700:4700::1111", ""},
		{builtin, "64:ff9b::808:808", ""},         // NAT64 of 8.8.8.8
		{builtin, "2002:808:808::1", ""},          // 6to4 of 8.8.8.8
		{builtin, "::ffff:8.8.8.8", ""},           // IPv4-mapped
		{builtin, "168.63.129.15", ""},            // next to Azure's wireserver
		{builtin, "100.63.255.255", ""},           // just below CGNAT
		{builtin, "100.128.0.0", ""},              // just above CGNAT
		{builtin, "172.15.255.255", ""},           // just below 172.16/12
		{builtin, "172.32.0.0", ""},               // just above
		{builtin, "2001:4860:4860::8888", ""},     // not Teredo (2001::/32)
		{builtin, "2a00:1450:4001:80b::200e", ""}, // global unicast
		{builtin, "64:ff9b::a00:1", "NAT64 form of 10.0.0.1: private 10.0.0.0/8"},
		{builtin, "64:ff9b::10.0.0.1", "NAT64 form of 10.0.0.1"},
		{builtin, "64:ff9b::a9fe:a9fe", "NAT64 form of 169.254.169.254: metadata 169.254.169.254/32"},
		{builtin, "64:ff9b::127.0.0.1", "NAT64 form of 127.0.0.1: loopback"},
		{builtin, "2002:a9fe:a9fe::1", "6to4 form of 169.254.169.254: metadata"},
		{builtin, "2002:a00:1::", "6to4 form of 10.0.0.1: private"},
		{builtin, "2002:7f00:1::1", "6to4 form of 127.0.0.1: loopback"},
		{builtin, "::ffff:169.254.169.254", "metadata 169.254.169.254/32"},
		{builtin, "::ffff:a9fe:a9fe", "metadata"},
		{builtin, "::ffff:10.0.0.1", "private 10.0.0.0/8"},
		{builtin, "::ffff:127.0.0.1", "loopback 127.0.0.0/8"},
		{builtin, "::10.0.0.1", "reserved"}, // IPv4-compatible (deprecated)
		{builtin, "::ffff:0:10.0.0.1", "reserved"},
		// Every default class.
		{builtin, "127.0.0.1", "loopback 127.0.0.0/8, not in allow"},
		{builtin, "127.255.255.254", "loopback"},
		{builtin, "::1", "loopback ::1/128"},
		{builtin, "10.0.0.1", "private 10.0.0.0/8"},
		{builtin, "172.16.0.1", "private 172.16.0.0/12"},
		{builtin, "172.31.255.255", "private"},
		{builtin, "192.168.1.1", "private 192.168.0.0/16"},
		{builtin, "100.64.0.1", "cgnat 100.64.0.0/10"},
		{builtin, "100.100.100.200", "metadata"},
		{builtin, "169.254.169.254", "metadata 169.254.169.254/32"},
		{builtin, "169.254.170.2", "metadata"},
		{builtin, "168.63.129.16", "metadata"},
		{builtin, "169.254.1.1", "link-local 169.254.0.0/16"},
		{builtin, "fe80::1", "link-local fe80::/10"},
		{builtin, "fe80::1%eth0", "link-local"},
		{builtin, "fd00:ec2::254", "metadata fd00:ec2::254/128"},
		{builtin, "fc00::1", "ula fc00::/7"},
		{builtin, "fd12:3456::1", "ula"},
		{builtin, "fec0::1", "site-local"},
		{builtin, "224.0.0.1", "multicast 224.0.0.0/4"},
		{builtin, "239.255.255.250", "multicast"},
		{builtin, "ff02::1", "multicast ff00::/8"},
		{builtin, "0.0.0.0", "unspecified"},
		{builtin, "0.1.2.3", "this-network"},
		{builtin, "::", "unspecified"},
		{builtin, "255.255.255.255", "broadcast"},
		{builtin, "240.0.0.1", "reserved 240.0.0.0/4"},
		{builtin, "192.0.0.170", "ietf-protocol"},
		{builtin, "192.0.2.1", "documentation"},
		{builtin, "198.51.100.7", "documentation"},
		{builtin, "203.0.113.7", "documentation"},
		{builtin, "198.18.0.1", "benchmarking"},
		{builtin, "198.19.255.255", "benchmarking"},
		{builtin, "192.88.99.1", "6to4-relay"},
		{builtin, "2001:db8::1", "documentation 2001:db8::/32"},
		{builtin, "3fff::1", "documentation"},
		{builtin, "2001::1", "teredo"},
		{builtin, "2001:2::1", "benchmarking"},
		{builtin, "100::1", "discard"},
		{builtin, "64:ff9b:1::1", "nat64-local"},
		{builtin, "5f00::1", "srv6"},
		{builtin, "4000::1", "reserved"},
		{builtin, "::2", "reserved"},
		// allow opens a private range, in every spelling of it.
		{private10, "10.1.2.3", ""},
		{private10, "::ffff:10.1.2.3", ""},
		{private10, "64:ff9b::a01:203", ""},
		{private10, "2002:a01:203::1", ""},
		{private10, "11.0.0.1", ""},
		{private10, "172.16.0.1", "private 172.16.0.0/12"},
		{mapped, "10.1.2.3", ""},
		{ula, "fd12::1", ""},
		{ula, "fd00:ec2::254", "metadata"}, // guarded inside the ULA range
		// A broad allow does not open link-local or metadata.
		{all, "10.0.0.1", ""},
		{all, "127.0.0.1", ""},
		{all, "::1", ""},
		{all, "169.254.1.1", "link-local 169.254.0.0/16, not in allow"},
		{all, "169.254.169.254", "metadata"},
		{all, "::ffff:169.254.169.254", "metadata"},
		{all, "64:ff9b::a9fe:a9fe", "NAT64 form of 169.254.169.254: metadata"},
		{all, "fe80::1", "link-local"},
		{all, "fe80::1%lo", "link-local"},
		{all, "fd00:ec2::254", "metadata"},
		// An allow inside link-local opens it, but not the metadata
		// addresses within.
		{linkLocal, "169.254.1.1", ""},
		{linkLocal, "fe80::1", ""},
		{linkLocal, "169.254.169.254", "metadata 169.254.169.254/32, not in allow"},
		{linkLocal, "10.0.0.1", "private"},
		{metadata, "169.254.169.254", ""},
		{metadata, "169.254.169.253", "link-local"},
		// deny wins over allow, and applies to public addresses too.
		{carve, "10.20.1.1", ""},
		{carve, "10.20.9.5", "in deny 10.20.9.0/24"},
		{carve, "::ffff:10.20.9.5", "in deny 10.20.9.0/24"},
		{carve, "64:ff9b::a14:905", "NAT64 form of 10.20.9.5: in deny 10.20.9.0/24"},
		{carve, "10.21.0.1", "private"},
		{denyPub, "8.8.8.8", "in deny 8.8.8.0/24"},
		{denyPub, "64:ff9b::808:808", "NAT64 form of 8.8.8.8: in deny"},
		{denyPub, "2002:808:808::1", "6to4 form of 8.8.8.8: in deny"},
	}
	compiled := make(map[string]*egressPolicy)
	for _, tc := range tests {
		p := compiled[tc.p.name]
		if p == nil {
			p = testPolicy(t, EgressPolicy{Allow: tc.p.allow, Deny: tc.p.deny})
			compiled[tc.p.name] = p
		}
		a, err := netip.ParseAddr(tc.addr)
		if err != nil {
			t.Fatalf("%s: %v", tc.addr, err)
		}
		got := p.refusal(a)
		switch {
		case tc.rule == "" && got != "":
			t.Errorf("%s: %s refused (%s), want allowed", tc.p.name, tc.addr, got)
		case tc.rule != "" && got == "":
			t.Errorf("%s: %s allowed, want refused (%s)", tc.p.name, tc.addr, tc.rule)
		case !strings.Contains(got, tc.rule):
			t.Errorf("%s: %s refused as %q, want it to say %q", tc.p.name, tc.addr, got, tc.rule)
		}
		// The dialler's last check, in the socket's Control hook, agrees.
		ctlErr := p.control("tcp", netip.AddrPortFrom(a, 443).String(), nil)
		var eg *egressError
		if (ctlErr == nil) != (tc.rule == "") || ctlErr != nil && !errors.As(ctlErr, &eg) {
			t.Errorf("%s: control(%s) = %v", tc.p.name, tc.addr, ctlErr)
		}
	}
}

func TestEgressBindFamily(t *testing.T) {
	p := testPolicy(t, EgressPolicy{Bind: []string{"127.0.0.2"}, Allow: []string{"127.0.0.0/8", "::1/128"}})
	if why := p.refusal(netip.MustParseAddr("127.0.0.1")); why != "" {
		t.Errorf("127.0.0.1 refused: %s", why)
	}
	if why := p.refusal(netip.MustParseAddr("::1")); !strings.Contains(why, "no IPv6 bind address") {
		t.Errorf("::1 with an IPv4 bind address only: %q, want a refusal", why)
	}
	if hasIPv6Loopback() {
		p = testPolicy(t, EgressPolicy{Bind: []string{"::1"}, Allow: []string{"127.0.0.0/8", "::1/128"}})
		if why := p.refusal(netip.MustParseAddr("127.0.0.1")); !strings.Contains(why, "no IPv4 bind address") {
			t.Errorf("127.0.0.1 with an IPv6 bind address only: %q, want a refusal", why)
		}
	}
}

func hasIPv6Loopback() bool {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func TestEgressCompileErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	t.Setenv("HOOKGATE_TEST_PROXY_PASS", "pr0xy-s3cret")
	tests := []struct {
		name string
		cfg  EgressPolicy
		want string
		hide string // must not appear in the error
	}{
		{"bind not on host", EgressPolicy{Bind: []string{"203.0.113.7"}},
			`test policy: bind 203.0.113.7: this host has no such address`, ""},
		{"bind name", EgressPolicy{Bind: []string{"egress.example.com"}}, `bind "egress.example.com": expected an IP address`, ""},
		{"bind unspecified", EgressPolicy{Bind: []string{"0.0.0.0"}}, "bind 0.0.0.0: expected a unicast address", ""},
		{"bind two v4", EgressPolicy{Bind: []string{"127.0.0.2", "127.0.0.3"}}, "more than one address of the same family", ""},
		{"allow host bits", EgressPolicy{Allow: []string{"10.0.0.1/8"}}, "host bits are set; write 10.0.0.0/8 for the range or 10.0.0.1/32", ""},
		{"allow junk", EgressPolicy{Allow: []string{"ten"}}, `allow "ten": expected a CIDR`, ""},
		{"deny zone", EgressPolicy{Deny: []string{"fe80::1%eth0"}}, `deny "fe80::1%eth0"`, ""},
		{"proxy scheme", EgressPolicy{Proxy: "socks5://u:{env.HOOKGATE_TEST_PROXY_PASS}@proxy.internal:1080"},
			"expected an http:// proxy URL", "pr0xy-s3cret"},
		{"proxy path", EgressPolicy{Proxy: "http://u:{env.HOOKGATE_TEST_PROXY_PASS}@proxy.internal:3128/x"},
			"expected http://[user:password@]host:port", "pr0xy-s3cret"},
		{"proxy unparsable", EgressPolicy{Proxy: "http://u:{env.HOOKGATE_TEST_PROXY_PASS}@proxy internal:3128"},
			"expected a URL", "pr0xy-s3cret"},
		{"proxy empty", EgressPolicy{Proxy: "{env.HOOKGATE_TEST_UNSET_PROXY}"}, "empty after expanding placeholders", ""},
		{"proxy_resolves alone", EgressPolicy{ProxyResolves: true}, "proxy_resolves needs a proxy", ""},
		{"ca missing", EgressPolicy{TLS: &EgressTLS{CA: []string{filepath.Join(dir, "nope.pem")}}}, "tls ca: open", ""},
		{"ca not PEM", EgressPolicy{TLS: &EgressTLS{CA: []string{notPEM}}}, "no PEM certificate found", ""},
		{"cert without key", EgressPolicy{TLS: &EgressTLS{ClientCert: notPEM}}, "client_cert and client_key go together", ""},
		{"cert not PEM", EgressPolicy{TLS: &EgressTLS{ClientCert: notPEM, ClientKey: notPEM}}, "tls client_cert " + notPEM, ""},
		{"min version", EgressPolicy{TLS: &EgressTLS{MinVersion: "1.1"}}, `min_version "1.1": expected 1.2 or 1.3`, ""},
		{"redirects", EgressPolicy{FollowRedirects: 21}, "follow_redirects 21: expected 0 to 20", ""},
	}
	for _, tc := range tests {
		_, _, err := compileEgress("test policy", &tc.cfg)
		if err == nil {
			t.Errorf("%s: compiled, want an error containing %q", tc.name, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to contain %q", tc.name, err, tc.want)
		}
		if tc.hide != "" && strings.Contains(err.Error(), tc.hide) {
			t.Errorf("%s: error %q shows a secret", tc.name, err)
		}
	}

	// The bind addresses Linux routes to lo (all of 127.0.0.0/8) work.
	for _, a := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		testPolicy(t, EgressPolicy{Bind: []string{a}})
	}
}

// provisionApp provisions an App without starting it.
func provisionApp(t *testing.T, a *App) error {
	t.Helper()
	t.Cleanup(func() { a.Cleanup() })
	return a.Provision(caddy.Context{Context: context.Background()})
}

func TestEgressProvision(t *testing.T) {
	route := func(egress string, inline *EgressPolicy) *Route {
		return &Route{Topics: []string{"*"}, URL: "https://partner.example/x", Egress: egress, EgressPolicy: inline}
	}
	t.Run("undefined policy", func(t *testing.T) {
		a := &App{
			Storage: t.TempDir(),
			Egress:  map[string]*EgressPolicy{"partner": {}},
			Routes:  map[string]*Route{"erp": route("parnter", nil)},
		}
		err := provisionApp(t, a)
		if err == nil || !strings.Contains(err.Error(), `route erp: egress policy "parnter" is not defined (defined: partner)`) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("name and inline", func(t *testing.T) {
		a := &App{
			Storage: t.TempDir(),
			Egress:  map[string]*EgressPolicy{"partner": {}},
			Routes:  map[string]*Route{"erp": route("partner", &EgressPolicy{})},
		}
		if err := provisionApp(t, a); err == nil || !strings.Contains(err.Error(), "route erp: names egress policy") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("broken unused policy", func(t *testing.T) {
		a := &App{
			Storage: t.TempDir(),
			Egress:  map[string]*EgressPolicy{"unused": {Bind: []string{"203.0.113.7"}}},
		}
		if err := provisionApp(t, a); err == nil || !strings.Contains(err.Error(), `egress policy "unused": bind 203.0.113.7`) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("which policy", func(t *testing.T) {
		a := &App{
			Storage: t.TempDir(),
			Egress: map[string]*EgressPolicy{
				"default": {Allow: []string{"10.0.0.0/8"}},
				"partner": {Allow: []string{"10.20.0.0/16"}},
			},
			Routes: map[string]*Route{
				"a": route("", nil),
				"b": route("partner", nil),
				"c": route("", &EgressPolicy{Allow: []string{"192.168.0.0/16"}}),
				"d": route("default", nil),
			},
		}
		if err := provisionApp(t, a); err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{}
		for name, r := range a.routes {
			if r.client == nil {
				t.Fatalf("route %s has no egress client: it would deliver unchecked", name)
			}
			labels[name] = policyOf(t, r).label
		}
		want := map[string]string{
			"a": `egress policy "default"`,
			"b": `egress policy "partner"`,
			"c": `inline egress policy of route "c"`,
			"d": `egress policy "default"`,
		}
		for name, l := range want {
			if labels[name] != l {
				t.Errorf("route %s uses %s, want %s", name, labels[name], l)
			}
		}
		if a.routes["a"].client != a.routes["d"].client {
			t.Errorf("two routes of one policy got two clients")
		}
	})
	t.Run("built-in", func(t *testing.T) {
		a := &App{Storage: t.TempDir(), Routes: map[string]*Route{"a": route("", nil)}}
		if err := provisionApp(t, a); err != nil {
			t.Fatal(err)
		}
		p := policyOf(t, a.routes["a"])
		if p.label != "built-in default egress policy" || p.refusal(netip.MustParseAddr("127.0.0.1")) == "" {
			t.Errorf("built-in policy %q lets loopback through", p.label)
		}
	})
}

// policyOf finds the policy behind a route's client.
func policyOf(t *testing.T, r *route) *egressPolicy {
	t.Helper()
	var found *egressPolicy
	egressClients.Range(func(_, v any) bool {
		if c := v.(*egressClient); c.client == r.client {
			found = c.policy
			return false
		}
		return true
	})
	if found == nil {
		t.Fatalf("route %s: client not in the egress pool", r.name)
	}
	return found
}

// TestEgressTransportAcrossReloads checks the pool: a config that keeps a
// policy unchanged gets the same transport (its connections stay
// pooled), a changed policy gets a new one, and a transport is closed
// once no config uses it.
func TestEgressTransportAcrossReloads(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	writeTestCA(t, ca)
	cfg := func(allow string) *App {
		return &App{
			Storage: dir,
			Egress:  map[string]*EgressPolicy{"default": {Allow: []string{allow}, TLS: &EgressTLS{CA: []string{ca}}}},
			Routes:  map[string]*Route{"a": {Topics: []string{"*"}, URL: "https://partner.example/x"}},
		}
	}
	refs := func(a *App) int {
		n, _ := egressClients.References(a.egressKeys[0])
		return n
	}
	old := cfg("10.0.0.0/8")
	if err := old.Provision(caddy.Context{Context: context.Background()}); err != nil {
		t.Fatal(err)
	}
	same := cfg("10.0.0.0/8")
	if err := same.Provision(caddy.Context{Context: context.Background()}); err != nil {
		t.Fatal(err)
	}
	if same.routes["a"].client != old.routes["a"].client || refs(same) != 2 {
		t.Fatalf("an unchanged policy got a new transport (references %d)", refs(same))
	}
	old.Cleanup()
	if refs(same) != 1 {
		t.Fatalf("references after the old config's cleanup: %d, want 1", refs(same))
	}

	changed := cfg("10.1.0.0/16")
	if err := changed.Provision(caddy.Context{Context: context.Background()}); err != nil {
		t.Fatal(err)
	}
	if changed.routes["a"].client == same.routes["a"].client {
		t.Fatalf("a changed policy kept the old transport")
	}
	// A renewed CA file with an unchanged config is a change too.
	writeTestCA(t, ca)
	renewed := cfg("10.1.0.0/16")
	if err := renewed.Provision(caddy.Context{Context: context.Background()}); err != nil {
		t.Fatal(err)
	}
	if renewed.routes["a"].client == changed.routes["a"].client {
		t.Fatalf("a policy whose CA file changed kept the old transport")
	}
	key := same.egressKeys[0]
	same.Cleanup()
	changed.Cleanup()
	renewed.Cleanup()
	if _, ok := egressClients.References(key); ok {
		t.Errorf("transport still pooled after its last config was cleaned up")
	}
}

// TestEgressDNSRebinding: the resolver answers an allowed address first
// and a denied one next. The second attempt needs a new connection (the
// sink closes each one) and must fail egress_denied without any
// connection reaching the denied address.
func TestEgressDNSRebinding(t *testing.T) {
	allowed := newCountingServer(t, "127.0.0.1:0", true)
	_, port, _ := net.SplitHostPort(allowed.addr)
	denied := newCountingServer(t, "127.0.0.2:"+port, true)

	p := testPolicy(t, EgressPolicy{Allow: []string{"127.0.0.1/32"}})
	var lookups atomic.Int32
	answers := [][]netip.Addr{
		{netip.MustParseAddr("127.0.0.1")},
		{netip.MustParseAddr("127.0.0.2")},
		{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")},
		{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("::1")},
	}
	p.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		if host != "rebind.test" {
			t.Errorf("looked up %q", host)
		}
		n := int(lookups.Add(1)) - 1
		return answers[min(n, len(answers)-1)], nil
	}
	c := newEgressClient(p)
	defer c.Destruct()
	r := testRoute(t, &Route{URL: "http://rebind.test:" + port + "/hook"})
	r.client = c.client
	s := newSender()

	res := s.attempt(context.Background(), r, testJob(time.Now()), time.Now())
	if !res.ok() || allowed.conns.Load() != 1 {
		t.Fatalf("first attempt (resolves to 127.0.0.1): %+v, %d connections", res, allowed.conns.Load())
	}
	res = s.attempt(context.Background(), r, testJob(time.Now()), time.Now())
	if res.class != classEgressDenied || res.retry {
		t.Fatalf("second attempt (resolves to 127.0.0.2): class %q retry %v, want egress_denied, final; error %s", res.class, res.retry, res.err)
	}
	for _, want := range []string{"rebind.test resolved to 127.0.0.2", "loopback 127.0.0.0/8, not in allow", "test policy"} {
		if !strings.Contains(res.err, want) {
			t.Errorf("error %q does not say %q", res.err, want)
		}
	}
	// Mixed answers: only the allowed address is dialled.
	res = s.attempt(context.Background(), r, testJob(time.Now()), time.Now())
	if !res.ok() || allowed.conns.Load() != 2 {
		t.Fatalf("third attempt (127.0.0.2 then 127.0.0.1): %+v", res)
	}
	res = s.attempt(context.Background(), r, testJob(time.Now()), time.Now())
	if res.class != classEgressDenied || !strings.Contains(res.err, "127.0.0.2: loopback") || !strings.Contains(res.err, "::1: loopback") {
		t.Fatalf("fourth attempt (all denied): %+v", res)
	}
	if n := denied.conns.Load(); n != 0 {
		t.Fatalf("the denied address got %d connections", n)
	}
	if lookups.Load() != 4 {
		t.Errorf("%d lookups for 4 new connections", lookups.Load())
	}
}

// TestEgressControlRefusesBeforeConnect dials a denied address directly,
// past the resolver step: the socket's Control hook refuses it before
// connect, so nothing reaches the listener.
func TestEgressControlRefusesBeforeConnect(t *testing.T) {
	srv := newCountingServer(t, "127.0.0.1:0", false)
	p := testPolicy(t, EgressPolicy{})
	_, err := p.dialAddr(context.Background(), netip.MustParseAddrPort(srv.addr), 1)
	var eg *egressError
	if !errors.As(err, &eg) || !strings.Contains(err.Error(), "127.0.0.1: loopback") {
		t.Fatalf("dial error %v, want an egress refusal", err)
	}
	if class, retry := classifyError(&url.Error{Op: "Post", URL: "http://x", Err: err}, true); class != classEgressDenied || retry {
		t.Errorf("classified %s retry %v", class, retry)
	}
	time.Sleep(50 * time.Millisecond)
	if n := srv.conns.Load(); n != 0 {
		t.Fatalf("%d connections reached the listener", n)
	}
}

func TestEgressCheckRedirect(t *testing.T) {
	p := testPolicy(t, EgressPolicy{Allow: []string{"127.0.0.1/32"}, FollowRedirects: 2})
	req := func(method, u string) *http.Request {
		r, _ := http.NewRequest(method, u, nil)
		return r
	}
	first := req("POST", "https://127.0.0.1/a")
	tests := []struct {
		name string
		next *http.Request
		via  []*http.Request
		want string // "" follow, "last" the 3xx as is, else an egress refusal containing it
	}{
		{"307 to allowed", req("POST", "https://127.0.0.1/b"), []*http.Request{first}, ""},
		{"303 turns POST into GET", req("GET", "https://127.0.0.1/b"), []*http.Request{first}, "last"},
		{"to denied", req("POST", "https://127.0.0.2/b"), []*http.Request{first}, "127.0.0.2: loopback"},
		{"to metadata", req("POST", "https://169.254.169.254/latest"), []*http.Request{first}, "metadata"},
		{"https to http", req("POST", "http://127.0.0.1/b"), []*http.Request{first}, "redirect from https to http://127.0.0.1 refused"},
		{"third hop", req("POST", "https://127.0.0.1/d"), []*http.Request{first, first, first}, "too many redirects"},
	}
	for _, tc := range tests {
		err := p.checkRedirect(tc.next, tc.via)
		var eg *egressError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want followed", tc.name, err)
		case tc.want == "last" && err != http.ErrUseLastResponse:
			t.Errorf("%s: %v, want the 3xx as is", tc.name, err)
		case tc.want != "" && tc.want != "last" && (!errors.As(err, &eg) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want a refusal saying %q", tc.name, err, tc.want)
		}
	}
	off := testPolicy(t, EgressPolicy{Allow: []string{"127.0.0.1/32"}})
	if err := off.checkRedirect(req("POST", "https://127.0.0.1/b"), []*http.Request{first}); err != http.ErrUseLastResponse {
		t.Errorf("follow_redirects 0: %v, want the 3xx as is", err)
	}
}

// countingServer is an HTTP server on a loopback address that counts
// the connections it accepts.
type countingServer struct {
	addr  string
	url   string
	conns atomic.Int64
	reqs  atomic.Int64
}

func newCountingServer(t testing.TB, addr string, closeEach bool) *countingServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &countingServer{addr: ln.Addr().String(), url: "http://" + ln.Addr().String()}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.reqs.Add(1)
			w.WriteHeader(http.StatusNoContent)
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
	}
	srv.SetKeepAlivesEnabled(!closeEach)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return s
}

// writeTestCA writes a fresh self-signed CA certificate.
func writeTestCA(t *testing.T, path string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	// httptest's certificate is the same each run; a server on a new
	// port makes no new one, so add a comment line to change the bytes.
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	b = append([]byte("# "+time.Now().Format(time.RFC3339Nano)+"\n"), b...)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEgressProxyRefusals: a proxy's 403 is the proxy's egress policy
// saying no (egress_denied, final); 407 and 502 are worth a retry. No
// error shows the proxy credentials.
func TestEgressProxyRefusals(t *testing.T) {
	for _, tc := range []struct {
		status string
		class  string
		retry  bool
	}{
		{"403 Forbidden", classEgressDenied, false},
		{"407 Proxy Authentication Required", classConnect, true},
		{"502 Bad Gateway", classConnect, true},
	} {
		var got atomic.Value
		addr := rawListener(t, func(c net.Conn) {
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err == nil {
				got.Store(req.Method + " " + req.Host + " " + req.Header.Get("Proxy-Authorization"))
			}
			io.WriteString(c, "HTTP/1.1 "+tc.status+"\r\nContent-Length: 0\r\n\r\n")
			c.Close()
		})
		p := testPolicy(t, EgressPolicy{Allow: []string{"127.0.0.1/32"}, Proxy: "http://hookgate:s3cr3t@" + addr})
		c := newEgressClient(p)
		r := testRoute(t, &Route{URL: "http://127.0.0.1:9/hook"})
		r.client = c.client
		res := newSender().attempt(context.Background(), r, testJob(time.Now()), time.Now())
		c.Destruct()
		if res.class != tc.class || res.retry != tc.retry {
			t.Errorf("proxy %s: class %q retry %v (%s), want %q %v", tc.status, res.class, res.retry, res.err, tc.class, tc.retry)
		}
		if !strings.Contains(res.err, "CONNECT 127.0.0.1:9") || strings.Contains(res.err, "s3cr3t") {
			t.Errorf("proxy %s: error %q", tc.status, res.err)
		}
		want := "CONNECT 127.0.0.1:9 Basic " + base64.StdEncoding.EncodeToString([]byte("hookgate:s3cr3t"))
		if v, _ := got.Load().(string); v != want {
			t.Errorf("proxy got %q, want %q", v, want)
		}
	}
}
