// Package egress is where hookgate's deliveries leave the host: named
// egress policies (source address, destination checks, proxy, TLS trust,
// redirects) compiled into the HTTP clients routes send with.
//
// Destinations are checked on the address actually dialled, after DNS
// resolution, on every new connection, redirect hop and proxy connection;
// a refused connection fails with a *DeniedError. Clients are pooled by a
// hash of their policy, so a config reload that leaves a policy unchanged
// keeps its keep-alive connections.
//
// The package is a leaf: it knows nothing of the webhooks app. The app
// calls Provision when its config loads and Release when it is cleaned
// up; the Caddyfile parser calls the validators (CheckName, ParseCIDR,
// CheckAllowOnly, CheckBind, CheckProxyURL, CheckFollowRedirects,
// CheckMinVersion, (*Policy).Validate) so that a bad line fails with its file and line and
// the same words as a bad JSON config.
package egress

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Policy says where a route's deliveries may go and how they leave
// the host: the source address, the destinations allowed, an HTTP CONNECT
// proxy, the TLS trust and client certificate, and whether redirects are
// followed.
//
// Destinations are checked on the address actually dialled, after DNS
// resolution, on every new connection (so a name that resolves to a
// public address once and to an internal one the next time gains
// nothing), and on every redirect hop and proxy connection. By default a
// policy refuses loopback, private (RFC 1918, IPv6 ULA), CGNAT,
// link-local and cloud metadata addresses, multicast, broadcast,
// unspecified, documentation, benchmarking and other reserved ranges, in
// every spelling (IPv4-mapped IPv6, NAT64 64:ff9b::/96, 6to4 2002::/16),
// and allows public addresses. A refused connection fails the attempt
// with class `egress_denied` (final, not retried) and an error naming the
// address, the rule that refused it and the policy.
//
// A route names a policy in its `egress` field, or defines one inline in
// `egress_policy`; a route that does neither uses the policy named
// "default" if there is one, else the built-in default (an empty policy).
type Policy struct {
	// Bind is the source address of outbound connections: at most one
	// IPv4 and one IPv6 address. A destination of a family with no bind
	// address is refused (egress_denied) rather than left from an
	// unpinned address, so with only an IPv4 bind address a route
	// reaches IPv4 destinations only. Every address must be one this host
	// can bind to, or the config fails to load. Default: none (the
	// operating system picks the source address).
	Bind []string `json:"bind,omitempty"`

	// Allow lists CIDRs (or single addresses) that may be dialled
	// although a default rule denies them, such as a partner's private
	// range 10.20.0.0/16. Link-local and cloud metadata addresses
	// (169.254.0.0/16, fe80::/10, 169.254.169.254 and the like) are
	// guarded: a broader CIDR such as 0.0.0.0/0 does not open them; only
	// a CIDR inside them does (169.254.169.254/32 opens the metadata
	// address, 169.254.0.0/16 opens link-local but not the metadata
	// addresses in it). NAT64 and 6to4 addresses are checked as the IPv4
	// address they embed, so allow the IPv4 CIDR. A CIDR must be written
	// with its host bits zero (10.0.0.0/8, not 10.0.0.1/8).
	Allow []string `json:"allow,omitempty"`

	// Deny lists CIDRs (or single addresses) that are never dialled,
	// public or not. Deny wins over Allow and AllowOnly, so a subnet can
	// be carved out of an allowed range.
	Deny []string `json:"deny,omitempty"`

	// AllowOnly, when set, turns the policy into an allow list: only the
	// destinations it lists may be dialled, and everything else is
	// refused (egress_denied, "not in allow_only"), public addresses
	// included. An entry is a CIDR or single address (matched against
	// the address dialled, after resolution, on every connection), a host
	// name such as partner.example (matched against the host name the
	// delivery asks for, case-insensitively), or *.partner.example (any
	// subdomain of partner.example, at any depth, but not
	// partner.example itself).
	//
	// It narrows, never widens: Deny still wins, and an address reached
	// through a listed host name must still pass the default rules, so a
	// listed name that resolves to a private, loopback, link-local or
	// metadata address is refused unless a CIDR in Allow or AllowOnly
	// covers that address. A CIDR in AllowOnly opens the default-denied
	// ranges it covers, as one in Allow does (link-local and metadata
	// only by a CIDR inside them). Allow does not add destinations to the
	// list. Through a proxy, host entries are matched against the CONNECT
	// target; with ProxyResolves the address is not known here, so only
	// host entries (and IP-literal destinations in a CIDR entry) can
	// match. The proxy's own address is not a destination: AllowOnly does
	// not apply to it (Allow and Deny do).
	AllowOnly []string `json:"allow_only,omitempty"`

	// Proxy is the URL of an HTTP CONNECT proxy,
	// http://[user:password@]host:port or https://[user:password@]host:port
	// (TLS to the proxy itself, verified against ProxyCA). Every
	// delivery, http:// and https:// alike, goes through a CONNECT
	// tunnel, so the proxy must allow CONNECT to the destination ports.
	// Credentials are sent as Proxy-Authorization: Basic on every
	// CONNECT (in the clear with an http:// proxy). The policy applies to
	// the proxy's own address too (a proxy on a private address needs an
	// Allow for it). Destination names are resolved and checked here, and
	// the tunnel is opened to the checked IP address, unless
	// ProxyResolves is set. Placeholders such as {env.PROXY_PASSWORD} are
	// expanded at load; credentials never appear in logs or errors.
	Proxy string `json:"proxy,omitempty"`

	// ProxyCA lists PEM files of the CAs trusted for an https:// proxy's
	// certificate. Default: the system's CAs. It does not affect the
	// destinations (TLS.CA does). Needs an https:// Proxy.
	ProxyCA []string `json:"proxy_ca,omitempty"`

	// ProxyResolves leaves name resolution to the proxy: the tunnel is
	// opened to the destination's host name and the policy cannot check
	// the address the proxy connects to (the proxy's own rules must).
	// Destinations given as IP addresses, the proxy's address and
	// redirect targets given as addresses are still checked, and so are
	// legacy IPv4 spellings that resolvers read as addresses (2130706434,
	// 127.2, 0x7f000002, 0177.0.0.2 all mean 127.0.0.2; the proxy is
	// asked for the address they mean). A numeric-looking name that is
	// no valid address (256.1.1.1, example.123) is refused. Needs Proxy.
	ProxyResolves bool `json:"proxy_resolves,omitempty"`

	// TLS sets the CAs trusted for destinations, a client certificate
	// (mTLS) and the minimum TLS version. Default: the system's CAs, no
	// client certificate, TLS 1.2. Certificate verification cannot be
	// turned off.
	TLS *TLS `json:"tls,omitempty"`

	// FollowRedirects is how many redirects one attempt may follow.
	// Default: 0, redirects are not followed and a 3xx answer fails the
	// attempt with class http_3xx. Only 307 and 308 are followed (they
	// keep the POST and its body; a 301, 302 or 303 would turn it into a
	// GET without a body, so it is returned as it is, class http_3xx), a
	// redirect from https to http is refused, and every hop is checked
	// like the first. A redirect beyond the limit fails the attempt with
	// class egress_denied ("too many redirects"). At most 20.
	FollowRedirects int `json:"follow_redirects,omitempty"`
}

// TLS is the TLS part of an egress policy. Files are read when the
// config loads (placeholders such as {env.CERT_DIR} are expanded in the
// paths); reload the config to pick up renewed files.
type TLS struct {
	// CA lists PEM files of the CAs trusted for destination certificates.
	// They replace the system's CAs for this policy's routes, so a
	// policy for a partner with a private CA trusts that CA only.
	// Default: the system's CAs.
	CA []string `json:"ca,omitempty"`

	// ClientCert and ClientKey are PEM files of the client certificate
	// (with its chain) and its private key, presented to servers that ask
	// for one (mTLS). Both or neither.
	ClientCert string `json:"client_cert,omitempty"`
	ClientKey  string `json:"client_key,omitempty"`

	// MinVersion is the lowest TLS version offered: "1.2" (default) or
	// "1.3".
	MinVersion string `json:"min_version,omitempty"`
}

// DeniedError is a connection (or redirect) the egress policy refused.
// A delivery that fails with one is final: class egress_denied, no
// retries. Reason names the address or host, the rule and the policy,
// and never holds credentials.
type DeniedError struct {
	Reason string
}

func (e *DeniedError) Error() string { return "egress denied: " + e.Reason }

// DefaultName is the policy routes use when they name none.
const DefaultName = "default"

// MaxFollowRedirects bounds Policy.FollowRedirects.
const MaxFollowRedirects = 20

// Transport settings of every egress policy.
const (
	dialTimeout  = 10 * time.Second
	tcpKeepAlive = 30 * time.Second
)

// CheckName checks a policy name: 1 to 64 characters of A-Z a-z 0-9 _ - .
// (the same alphabet as route names, so names fit in logs and URLs).
func CheckName(name string) error {
	ok := len(name) > 0 && len(name) <= 64
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
	}
	if !ok {
		return fmt.Errorf("invalid egress policy name %q: expected 1 to 64 characters of A-Z a-z 0-9 _ - .", name)
	}
	return nil
}

// ParseCIDR parses an allow or deny entry: a CIDR with its host bits
// zero, or a single IP address. IPv4-mapped IPv6 forms are turned into
// IPv4. A CIDR with host bits set is refused: in a security rule,
// 10.0.0.1/8 may mean 10.0.0.0/8 or 10.0.0.1/32, and guessing either is
// wrong half the time.
func ParseCIDR(s string) (netip.Prefix, error) {
	var pf netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if pf, err = netip.ParsePrefix(s); err != nil {
			return pf, fmt.Errorf("%q: expected a CIDR such as 10.20.0.0/16 or an IP address", s)
		}
		if pf.Masked() != pf {
			return pf, fmt.Errorf("%q: host bits are set; write %s for the range or %s for the address",
				s, pf.Masked(), netip.PrefixFrom(pf.Addr(), pf.Addr().BitLen()))
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return pf, fmt.Errorf("%q: expected a CIDR such as 10.20.0.0/16 or an IP address", s)
		}
		pf = netip.PrefixFrom(a, a.BitLen())
	}
	if a := pf.Addr(); a.Is4In6() && pf.Bits() >= 96 {
		pf = netip.PrefixFrom(a.Unmap(), pf.Bits()-96)
	}
	return pf, nil
}

// parsePrefixes parses a list of ParseCIDR entries.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		pf, err := ParseCIDR(s)
		if err != nil {
			return nil, err
		}
		out = append(out, pf)
	}
	return out, nil
}

// CheckBind checks the syntax of a bind list: unicast IP addresses, at
// most one per family. Whether this host has them is checked when the
// policy is compiled.
func CheckBind(addrs []string) error {
	_, _, err := parseBind(addrs)
	return err
}

func parseBind(addrs []string) (v4, v6 netip.Addr, err error) {
	for _, s := range addrs {
		a, perr := netip.ParseAddr(s)
		a = a.Unmap()
		if perr != nil || a.IsUnspecified() || a.IsMulticast() {
			return v4, v6, fmt.Errorf("invalid bind address %q: expected a unicast IP address of this host", s)
		}
		prev := &v6
		if a.Is4() {
			prev = &v4
		}
		if prev.IsValid() {
			return v4, v6, fmt.Errorf("bind %s: %s is already bound for this address family (at most one IPv4 and one IPv6 address)", s, prev)
		}
		*prev = a
	}
	return v4, v6, nil
}

// proxyURL is a parsed Policy.Proxy.
type proxyURL struct {
	host string
	port uint16
	// shown is the URL without credentials, for messages.
	shown string
	// auth is the Proxy-Authorization value, or empty.
	auth string
	// tls: an https:// proxy, spoken to over TLS.
	tls bool
}

// CheckProxyURL checks a proxy URL. A URL holding a placeholder ({env.…})
// is checked when the config loads, once it is expanded, so it passes
// here. Errors never quote the URL, which may carry credentials.
func CheckProxyURL(raw string) error {
	if strings.Contains(raw, "{") {
		return nil
	}
	_, err := parseProxyURL(raw)
	return err
}

func parseProxyURL(raw string) (*proxyURL, error) {
	const want = "expected http://[user:password@]host:port or https://[user:password@]host:port (an HTTP CONNECT proxy)"
	if raw == "" {
		return nil, fmt.Errorf("empty after expanding placeholders; %s", want)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		// url.Error quotes the URL, credentials and all.
		return nil, fmt.Errorf("%s", want)
	}
	shown := (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
	port := uint64(80)
	if u.Scheme == "https" {
		port = 443
	}
	if ps := u.Port(); ps != "" {
		if port, err = strconv.ParseUint(ps, 10, 16); err != nil || port == 0 {
			return nil, fmt.Errorf("%s: bad port", shown)
		}
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil && a.Zone() != "" {
		return nil, fmt.Errorf("%s: zoned addresses are not supported", shown)
	}
	p := &proxyURL{host: u.Hostname(), port: uint16(port), shown: shown, tls: u.Scheme == "https"}
	if u.User != nil {
		pass, _ := u.User.Password()
		p.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass))
	}
	return p, nil
}

// CheckFollowRedirects checks Policy.FollowRedirects.
func CheckFollowRedirects(n int) error {
	if n < 0 || n > MaxFollowRedirects {
		return fmt.Errorf("invalid follow_redirects %d: expected a number of redirects from 0 (off) to %d", n, MaxFollowRedirects)
	}
	return nil
}

// CheckMinVersion checks TLS.MinVersion.
func CheckMinVersion(v string) error {
	switch v {
	case "", "1.2", "1.3":
		return nil
	}
	return fmt.Errorf("invalid min_version %q: expected 1.2 or 1.3", v)
}

// Validate checks everything in a policy that needs neither the host nor
// files: the syntax of every entry and the options that go together. The
// Caddyfile parser calls it at the end of a policy block; compiling a
// policy calls it first.
func (p *Policy) Validate() error {
	if err := CheckBind(p.Bind); err != nil {
		return err
	}
	for _, l := range []struct {
		name string
		list []string
	}{{"allow", p.Allow}, {"deny", p.Deny}} {
		for _, s := range l.list {
			if _, err := ParseCIDR(s); err != nil {
				return fmt.Errorf("invalid %s entry %v", l.name, err)
			}
		}
	}
	if p.Proxy != "" {
		if err := CheckProxyURL(p.Proxy); err != nil {
			return fmt.Errorf("invalid proxy URL: %v", err)
		}
	}
	for _, s := range p.AllowOnly {
		if err := CheckAllowOnly(s); err != nil {
			return err
		}
	}
	if p.ProxyResolves && p.Proxy == "" {
		return fmt.Errorf("proxy_resolves needs a proxy")
	}
	if len(p.ProxyCA) > 0 && !strings.HasPrefix(p.Proxy, "https://") && !strings.Contains(p.Proxy, "{") {
		return fmt.Errorf("proxy_ca needs an https:// proxy")
	}
	if t := p.TLS; t != nil {
		if (t.ClientCert == "") != (t.ClientKey == "") {
			return fmt.Errorf("tls: client_cert and client_key go together")
		}
		if err := CheckMinVersion(t.MinVersion); err != nil {
			return fmt.Errorf("tls: %v", err)
		}
	}
	return CheckFollowRedirects(p.FollowRedirects)
}
