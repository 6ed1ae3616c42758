package egress

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/hookgate/hookgate/internal/testnet"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Everything here dials loopback only; public addresses appear in the
// address table, which checks and never connects.

func testPolicy(t testing.TB, cfg Policy) *policy {
	t.Helper()
	p, _, err := compile("test policy", &cfg, "hookgate-test")
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return p
}

func TestEgressAddressClasses(t *testing.T) {
	type pol struct {
		name  string
		allow []string
		deny  []string
	}
	var (
		builtin   = pol{name: "built-in"}
		private10 = pol{name: "allow 10/8", allow: []string{"10.0.0.0/8"}}
		all       = pol{name: "allow all", allow: []string{"0.0.0.0/0", "::/0"}}
		linkLocal = pol{name: "allow link-local", allow: []string{"169.254.0.0/16", "fe80::/10"}}
		metadata  = pol{name: "allow metadata", allow: []string{"169.254.169.254/32"}}
		carve     = pol{name: "allow 10.20/16 deny 10.20.9/24", allow: []string{"10.20.0.0/16"}, deny: []string{"10.20.9.0/24"}}
		denyPub   = pol{name: "deny 8.8.8.0/24", deny: []string{"8.8.8.0/24"}}
		mapped    = pol{name: "allow written mapped", allow: []string{"::ffff:10.0.0.0/104"}}
		ula       = pol{name: "allow fc00::/7", allow: []string{"fc00::/7"}}
	)
	tests := []struct {
		p    pol
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
	compiled := make(map[string]*policy)
	for _, tc := range tests {
		p := compiled[tc.p.name]
		if p == nil {
			p = testPolicy(t, Policy{Allow: tc.p.allow, Deny: tc.p.deny})
			compiled[tc.p.name] = p
		}
		a, err := netip.ParseAddr(tc.addr)
		if err != nil {
			t.Fatalf("%s: %v", tc.addr, err)
		}
		got := p.refusal(a, toDest)
		switch {
		case tc.rule == "" && got != "":
			t.Errorf("%s: %s refused (%s), want allowed", tc.p.name, tc.addr, got)
		case tc.rule != "" && got == "":
			t.Errorf("%s: %s allowed, want refused (%s)", tc.p.name, tc.addr, tc.rule)
		case !strings.Contains(got, tc.rule):
			t.Errorf("%s: %s refused as %q, want it to say %q", tc.p.name, tc.addr, got, tc.rule)
		}
		// The dialler's last check, in the socket's Control hook, agrees.
		ctlErr := p.control(toDest)("tcp", netip.AddrPortFrom(a, 443).String(), nil)
		var eg *DeniedError
		if (ctlErr == nil) != (tc.rule == "") || ctlErr != nil && !errors.As(ctlErr, &eg) {
			t.Errorf("%s: control(%s) = %v", tc.p.name, tc.addr, ctlErr)
		}
	}
}

func TestEgressBindFamily(t *testing.T) {
	p := testPolicy(t, Policy{Bind: []string{"127.0.0.2"}, Allow: []string{"127.0.0.0/8", "::1/128"}})
	if why := p.refusal(netip.MustParseAddr("127.0.0.1"), toDest); why != "" {
		t.Errorf("127.0.0.1 refused: %s", why)
	}
	if why := p.refusal(netip.MustParseAddr("::1"), toDest); !strings.Contains(why, "no IPv6 bind address") {
		t.Errorf("::1 with an IPv4 bind address only: %q, want a refusal", why)
	}
	if hasIPv6Loopback() {
		p = testPolicy(t, Policy{Bind: []string{"::1"}, Allow: []string{"127.0.0.0/8", "::1/128"}})
		if why := p.refusal(netip.MustParseAddr("127.0.0.1"), toDest); !strings.Contains(why, "no IPv4 bind address") {
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
	t.Setenv("HOOKGATE_TEST_HTTP_PROXY", "http://proxy.internal:3128")
	tests := []struct {
		name string
		cfg  Policy
		want string
		hide string // must not appear in the error
	}{
		{"bind not on host", Policy{Bind: []string{"203.0.113.7"}},
			`test policy: bind 203.0.113.7: this host has no such address`, ""},
		{"bind name", Policy{Bind: []string{"egress.example.com"}}, `invalid bind address "egress.example.com": expected a unicast IP address`, ""},
		{"bind unspecified", Policy{Bind: []string{"0.0.0.0"}}, `invalid bind address "0.0.0.0": expected a unicast IP address`, ""},
		{"bind two v4", Policy{Bind: []string{"127.0.0.2", "127.0.0.3"}}, "bind 127.0.0.3: 127.0.0.2 is already bound for this address family", ""},
		{"allow host bits", Policy{Allow: []string{"10.0.0.1/8"}}, "host bits are set; write 10.0.0.0/8 for the range or 10.0.0.1/32", ""},
		{"allow junk", Policy{Allow: []string{"ten"}}, `invalid allow entry "ten": expected a CIDR`, ""},
		{"deny zone", Policy{Deny: []string{"fe80::1%eth0"}}, `invalid deny entry "fe80::1%eth0"`, ""},
		{"proxy scheme", Policy{Proxy: "socks5://u:{env.HOOKGATE_TEST_PROXY_PASS}@proxy.internal:1080"},
			"invalid proxy URL: expected http://[user:password@]host:port", "pr0xy-s3cret"},
		{"proxy path", Policy{Proxy: "http://u:{env.HOOKGATE_TEST_PROXY_PASS}@proxy.internal:3128/x"},
			"expected http://[user:password@]host:port", "pr0xy-s3cret"},
		{"proxy unparsable", Policy{Proxy: "http://u:{env.HOOKGATE_TEST_PROXY_PASS}@proxy internal:3128"},
			"invalid proxy URL: expected http://", "pr0xy-s3cret"},
		{"proxy empty", Policy{Proxy: "{env.HOOKGATE_TEST_UNSET_PROXY}"}, "empty after expanding placeholders", ""},
		{"proxy_resolves alone", Policy{ProxyResolves: true}, "proxy_resolves needs a proxy", ""},
		{"ca missing", Policy{TLS: &TLS{CA: []string{filepath.Join(dir, "nope.pem")}}}, "tls ca: open", ""},
		{"ca not PEM", Policy{TLS: &TLS{CA: []string{notPEM}}}, "no PEM certificate found", ""},
		{"cert without key", Policy{TLS: &TLS{ClientCert: notPEM}}, "client_cert and client_key go together", ""},
		{"cert not PEM", Policy{TLS: &TLS{ClientCert: notPEM, ClientKey: notPEM}}, "tls client_cert " + notPEM, ""},
		{"min version", Policy{TLS: &TLS{MinVersion: "1.1"}}, `tls: invalid min_version "1.1": expected 1.2 or 1.3`, ""},
		{"allow_only wildcard", Policy{AllowOnly: []string{"a.*.example"}}, `invalid allow_only entry "a.*.example": a wildcard only`, ""},
		{"allow_only host bits", Policy{AllowOnly: []string{"10.0.0.1/8"}}, `invalid allow_only entry "10.0.0.1/8": host bits are set`, ""},
		{"proxy_ca http proxy", Policy{Proxy: "http://proxy.internal:3128", ProxyCA: []string{notPEM}}, "proxy_ca needs an https:// proxy", ""},
		{"proxy_ca expanded http proxy", Policy{Proxy: "{env.HOOKGATE_TEST_HTTP_PROXY}", ProxyCA: []string{notPEM}}, "proxy_ca needs an https:// proxy", ""},
		{"proxy_ca not PEM", Policy{Proxy: "https://u:{env.HOOKGATE_TEST_PROXY_PASS}@proxy.internal:3129", ProxyCA: []string{notPEM}},
			"proxy_ca " + notPEM + ": no PEM certificate found", "pr0xy-s3cret"},
		{"proxy_ca missing", Policy{Proxy: "https://proxy.internal", ProxyCA: []string{filepath.Join(dir, "nope.pem")}}, "proxy_ca: open", ""},
		{"redirects", Policy{FollowRedirects: 21}, "invalid follow_redirects 21: expected a number of redirects from 0 (off) to 20", ""},
	}
	for _, tc := range tests {
		_, _, err := compile("test policy", &tc.cfg, "")
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
		testPolicy(t, Policy{Bind: []string{a}})
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

	p := testPolicy(t, Policy{Allow: []string{"127.0.0.1/32"}})
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
	c := newClient(p)
	defer c.Destruct()
	u := "http://rebind.test:" + port + "/hook"

	if err := post(c, u); err != nil || allowed.conns.Load() != 1 {
		t.Fatalf("first attempt (resolves to 127.0.0.1): %v, %d connections", err, allowed.conns.Load())
	}
	err := post(c, u)
	if !isDenied(err) {
		t.Fatalf("second attempt (resolves to 127.0.0.2): %v, want an egress refusal", err)
	}
	for _, want := range []string{"rebind.test resolved to 127.0.0.2", "loopback 127.0.0.0/8, not in allow", "test policy"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// Mixed answers: only the allowed address is dialled.
	if err := post(c, u); err != nil || allowed.conns.Load() != 2 {
		t.Fatalf("third attempt (127.0.0.2 then 127.0.0.1): %v", err)
	}
	err = post(c, u)
	if !isDenied(err) || !strings.Contains(err.Error(), "127.0.0.2: loopback") || !strings.Contains(err.Error(), "::1: loopback") {
		t.Fatalf("fourth attempt (all denied): %v", err)
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
	p := testPolicy(t, Policy{})
	_, err := p.dialAddr(context.Background(), netip.MustParseAddrPort(srv.addr), 1, toDest)
	var eg *DeniedError
	if !errors.As(err, &eg) || !strings.Contains(err.Error(), "127.0.0.1: loopback") {
		t.Fatalf("dial error %v, want an egress refusal", err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := srv.conns.Load(); n != 0 {
		t.Fatalf("%d connections reached the listener", n)
	}
}

func TestEgressCheckRedirect(t *testing.T) {
	p := testPolicy(t, Policy{Allow: []string{"127.0.0.1/32"}, FollowRedirects: 2})
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
		{"no host", req("POST", "https:///nohost"), []*http.Request{first}, "without a host"},
		{"empty host with a port", req("POST", "https://:8443/x"), []*http.Request{first}, "without a host"},
	}
	for _, tc := range tests {
		err := p.checkRedirect(tc.next, tc.via)
		var eg *DeniedError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want followed", tc.name, err)
		case tc.want == "last" && err != http.ErrUseLastResponse:
			t.Errorf("%s: %v, want the 3xx as is", tc.name, err)
		case tc.want != "" && tc.want != "last" && (!errors.As(err, &eg) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want a refusal saying %q", tc.name, err, tc.want)
		}
	}
	// What the client carries into the next request: the Referer it set
	// goes, always; to another host the route's credential headers go
	// too, signatures stay.
	carried := func(next, signature string) http.Header {
		r := req("POST", next)
		if signature != "" {
			r = r.WithContext(KeepOnRedirect(r.Context(), signature))
		}
		r.Header = http.Header{"Referer": {"https://127.0.0.1/a?token=SECRET"}, "X-Api-Key": {"k"},
			"X-Shopify-Hmac-Sha256": {"ab"}, "Webhook-Signature": {"v1,x"}, "X-Signature-Key": {"static"}, "X-Tenant": {"t"}}
		if err := p.checkRedirect(r, []*http.Request{first}); err != nil {
			t.Fatalf("redirect to %s: %v", next, err)
		}
		return r.Header
	}
	if h := carried("https://127.0.0.1/b", ""); h.Get("Referer") != "" || h.Get("X-Api-Key") != "k" || h.Get("X-Signature-Key") != "static" || h.Get("X-Tenant") != "t" {
		t.Errorf("same host: headers %v; want no Referer, the rest kept", h)
	}
	// To another host only the request's own signature header stays,
	// whatever its name; a static header named like one is a credential.
	for _, sig := range []string{"X-Shopify-Hmac-Sha256", "Webhook-Signature"} {
		h := carried("https://127.0.0.1:8443/b", sig)
		if h.Get(sig) == "" || h.Get("X-Tenant") != "t" || len(h) != 2 {
			t.Errorf("other host, signature in %s: headers %v; want only it and X-Tenant", sig, h)
		}
	}
	if h := carried("https://127.0.0.1:8443/b", ""); len(h) != 1 || h.Get("X-Tenant") != "t" {
		t.Errorf("other host, unsigned: headers %v; want only X-Tenant", h)
	}
	off := testPolicy(t, Policy{Allow: []string{"127.0.0.1/32"}})
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
		denied bool
	}{
		{"403 Forbidden", true},
		{"407 Proxy Authentication Required", false},
		{"502 Bad Gateway", false},
	} {
		var got atomic.Value
		addr := testnet.RawListener(t, func(c net.Conn) {
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err == nil {
				got.Store(req.Method + " " + req.Host + " " + req.Header.Get("Proxy-Authorization"))
			}
			io.WriteString(c, "HTTP/1.1 "+tc.status+"\r\nContent-Length: 0\r\n\r\n")
			c.Close()
		})
		p := testPolicy(t, Policy{Allow: []string{"127.0.0.1/32"}, Proxy: "http://hookgate:s3cr3t@" + addr})
		c := newClient(p)
		err := post(c, "http://127.0.0.1:9/hook")
		c.Destruct()
		if err == nil || isDenied(err) != tc.denied {
			t.Errorf("proxy %s: error %v, want a refusal: %v", tc.status, err, tc.denied)
			continue
		}
		if !strings.Contains(err.Error(), "CONNECT 127.0.0.1:9") || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("proxy %s: error %q", tc.status, err)
		}
		want := "CONNECT 127.0.0.1:9 Basic " + base64.StdEncoding.EncodeToString([]byte("hookgate:s3cr3t"))
		if v, _ := got.Load().(string); v != want {
			t.Errorf("proxy got %q, want %q", v, want)
		}
	}
}

// post sends one delivery-like POST through c and reads the answer.
func post(c *Client, u string) error {
	resp, err := c.HTTP().Post(u, "application/json", strings.NewReader(`{}`))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// isDenied reports whether err is an egress refusal.
func isDenied(err error) bool {
	var eg *DeniedError
	return errors.As(err, &eg)
}
