package module

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/hashicorp/go-retryablehttp"
)

// EgressPolicy says where a route's deliveries may go and how they leave
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
// A route names a policy in Route.Egress, or defines one inline in
// Route.EgressPolicy; a route that does neither uses the policy named
// "default" if there is one, else the built-in default (an empty policy).
type EgressPolicy struct {
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
	// public or not. Deny wins over Allow, so a subnet can be carved out
	// of an allowed range.
	Deny []string `json:"deny,omitempty"`

	// Proxy is an HTTP proxy URL (http://[user:password@]host:port). Every
	// delivery, http:// and https:// alike, goes through an HTTP CONNECT
	// tunnel, so the proxy must allow CONNECT to the destination ports.
	// The policy applies to the proxy's own address too (a proxy on a
	// private address needs an Allow for it). Destination names are
	// resolved and checked here, and the tunnel is opened to the checked
	// IP address, unless ProxyResolves is set. Placeholders such as
	// {env.PROXY_PASSWORD} are expanded at load; credentials never appear
	// in logs or errors.
	Proxy string `json:"proxy,omitempty"`

	// ProxyResolves leaves name resolution to the proxy: the tunnel is
	// opened to the destination's host name and the policy cannot check
	// the address the proxy connects to (the proxy's own rules must).
	// Destinations given as IP addresses, the proxy's address and
	// redirect targets given as addresses are still checked. Needs Proxy.
	ProxyResolves bool `json:"proxy_resolves,omitempty"`

	// TLS sets the CAs trusted for destinations, a client certificate
	// (mTLS) and the minimum TLS version. Default: the system's CAs, no
	// client certificate, TLS 1.2. Certificate verification cannot be
	// turned off.
	TLS *EgressTLS `json:"tls,omitempty"`

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

// EgressTLS is the TLS part of an egress policy. Files are read when the
// config loads (placeholders such as {env.CERT_DIR} are expanded in the
// paths); reload the config to pick up renewed files.
type EgressTLS struct {
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

// defaultEgressName is the policy routes use when they name none.
const defaultEgressName = "default"

// maxFollowRedirects bounds FollowRedirects.
const maxFollowRedirects = 20

// Transport settings of every egress policy.
const (
	egressDialTimeout  = 10 * time.Second
	egressTCPKeepAlive = 30 * time.Second
)

// egressPolicy is an EgressPolicy compiled for the dial path.
type egressPolicy struct {
	// label names the policy in errors: `egress policy "default"`.
	label string
	// bind4 and bind6 are the source addresses; zero when unset.
	bind4, bind6 netip.Addr
	allow, deny  []netip.Prefix
	// proxyAddr is the proxy's host:port, empty without a proxy;
	// proxyShown is its URL without credentials, for messages.
	proxyHost     string
	proxyPort     uint16
	proxyShown    string
	proxyAuth     string // Proxy-Authorization value, or empty
	proxyResolves bool
	tls           *tls.Config
	redirects     int
	// lookup resolves destination and proxy names; tests replace it.
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// egressClient is a policy with its transport and client, shared by every
// route (in every config) that uses the same policy unchanged.
type egressClient struct {
	policy *egressPolicy
	tr     *http.Transport
	client *retryablehttp.Client
}

// Destruct closes the idle connections of a transport no config uses any
// more. Requests still running on it finish.
func (c *egressClient) Destruct() error {
	c.tr.CloseIdleConnections()
	return nil
}

// egressClients holds one transport per policy, keyed by the policy's
// label and a hash of its compiled inputs (config with placeholders
// expanded, and the contents of the files it reads). A reload that
// leaves a policy unchanged gets the same transport, so its pooled
// connections live on; a changed policy gets a new one, and the old one
// is closed when the last config using it is cleaned up.
var egressClients = caddy.NewUsagePool()

// provisionEgress compiles the egress policies and gives every route the
// client of its policy. Named policies are all compiled (a broken unused
// policy still fails the load); transports are made for those in use.
func (a *App) provisionEgress() error {
	names := make([]string, 0, len(a.Egress))
	for name := range a.Egress {
		names = append(names, name)
	}
	slices.Sort(names)
	named := make(map[string]*EgressPolicy, len(names))
	for _, name := range names {
		cfg := a.Egress[name]
		if !validRouteName(name) {
			return fmt.Errorf("egress policy %q: a name is 1-64 characters of A-Z a-z 0-9 _ - .", name)
		}
		if cfg == nil {
			return fmt.Errorf("egress policy %q: empty definition", name)
		}
		named[name] = cfg
	}

	// Every named policy is compiled, used or not, so that a broken one
	// fails the load.
	type compiled struct {
		p   *egressPolicy
		key string
	}
	byLabel := make(map[string]compiled, len(names))
	for _, name := range names {
		p, key, err := compileEgress(namedLabel(name), named[name])
		if err != nil {
			return err
		}
		byLabel[namedLabel(name)] = compiled{p, key}
	}

	inUse := make(map[string]*egressClient)
	acquire := func(label string, cfg *EgressPolicy) (*egressClient, error) {
		if c, ok := inUse[label]; ok {
			return c, nil
		}
		cp, ok := byLabel[label]
		if !ok {
			p, key, err := compileEgress(label, cfg)
			if err != nil {
				return nil, err
			}
			cp = compiled{p, key}
		}
		val, _, err := egressClients.LoadOrNew(cp.key, func() (caddy.Destructor, error) {
			return newEgressClient(cp.p), nil
		})
		if err != nil {
			return nil, err
		}
		a.egressKeys = append(a.egressKeys, cp.key)
		c := val.(*egressClient)
		inUse[label] = c
		return c, nil
	}

	for _, name := range a.routeOrder {
		rc, r := a.Routes[name], a.routes[name]
		var (
			c   *egressClient
			err error
		)
		switch {
		case rc.EgressPolicy != nil && rc.Egress != "":
			return fmt.Errorf("route %s: names egress policy %q and defines one inline; use one or the other", name, rc.Egress)
		case rc.EgressPolicy != nil:
			c, err = acquire(fmt.Sprintf("inline egress policy of route %q", name), rc.EgressPolicy)
		case rc.Egress != "":
			cfg, ok := named[rc.Egress]
			if !ok {
				return fmt.Errorf("route %s: egress policy %q is not defined (defined: %s)", name, rc.Egress, listOrNone(names))
			}
			c, err = acquire(namedLabel(rc.Egress), cfg)
		case named[defaultEgressName] != nil:
			c, err = acquire(namedLabel(defaultEgressName), named[defaultEgressName])
		default:
			c, err = acquire("built-in default egress policy", &EgressPolicy{})
		}
		if err != nil {
			return err
		}
		r.client = c.client
	}
	return nil
}

// releaseEgress lets go of the transports this App acquired.
func (a *App) releaseEgress() {
	for _, key := range a.egressKeys {
		_, _ = egressClients.Delete(key)
	}
	a.egressKeys = nil
}

func namedLabel(name string) string { return fmt.Sprintf("egress policy %q", name) }

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// compileEgress checks and compiles a policy. key identifies the result
// for the transport pool: label plus a hash of everything that went into
// it, file contents included, so a reload after a certificate renewal
// builds a new transport.
func compileEgress(label string, cfg *EgressPolicy) (*egressPolicy, string, error) {
	p := &egressPolicy{label: label, lookup: lookupNetIP}
	errf := func(format string, args ...any) error {
		return fmt.Errorf("%s: "+format, append([]any{label}, args...)...)
	}
	repl := caddy.NewReplacer()
	// keyed is the policy as compiled: placeholders expanded. It is
	// hashed, never shown, since it holds the proxy credentials.
	keyed := *cfg
	var files [][]byte

	for _, s := range cfg.Bind {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, "", errf("bind %q: expected an IP address", s)
		}
		a = a.Unmap()
		if a.IsUnspecified() || a.IsMulticast() {
			return nil, "", errf("bind %s: expected a unicast address of this host", s)
		}
		if a.Is4() && p.bind4.IsValid() || a.Is6() && p.bind6.IsValid() {
			return nil, "", errf("bind %s: more than one address of the same family (at most one IPv4 and one IPv6)", s)
		}
		if err := probeBind(a); err != nil {
			return nil, "", errf("bind %s: this host has no such address (%v); its addresses are %s", s, err, hostAddrs())
		}
		if a.Is4() {
			p.bind4 = a
		} else {
			p.bind6 = a
		}
	}

	var err error
	if p.allow, err = parsePrefixes(cfg.Allow); err != nil {
		return nil, "", errf("allow %v", err)
	}
	if p.deny, err = parsePrefixes(cfg.Deny); err != nil {
		return nil, "", errf("deny %v", err)
	}

	if cfg.Proxy != "" {
		raw := repl.ReplaceKnown(cfg.Proxy, "")
		keyed.Proxy = raw
		if err := p.setProxy(raw); err != nil {
			return nil, "", errf("proxy: %v", err)
		}
	}
	if cfg.ProxyResolves {
		if cfg.Proxy == "" {
			return nil, "", errf("proxy_resolves needs a proxy")
		}
		p.proxyResolves = true
	}

	p.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	if t := cfg.TLS; t != nil {
		kt := *t
		keyed.TLS = &kt
		kt.CA = nil
		if len(t.CA) > 0 {
			pool := x509.NewCertPool()
			for _, f := range t.CA {
				f = repl.ReplaceKnown(f, "")
				kt.CA = append(kt.CA, f)
				pem, err := os.ReadFile(f)
				if err != nil {
					return nil, "", errf("tls ca: %v", err)
				}
				if !pool.AppendCertsFromPEM(pem) {
					return nil, "", errf("tls ca %s: no PEM certificate found", f)
				}
				files = append(files, pem)
			}
			p.tls.RootCAs = pool
		}
		switch {
		case t.ClientCert != "" && t.ClientKey != "":
			kt.ClientCert = repl.ReplaceKnown(t.ClientCert, "")
			kt.ClientKey = repl.ReplaceKnown(t.ClientKey, "")
			certPEM, err := os.ReadFile(kt.ClientCert)
			if err != nil {
				return nil, "", errf("tls client_cert: %v", err)
			}
			keyPEM, err := os.ReadFile(kt.ClientKey)
			if err != nil {
				return nil, "", errf("tls client_cert: %v", err)
			}
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				// The error describes the PEM blocks, never the key.
				return nil, "", errf("tls client_cert %s %s: %v", kt.ClientCert, kt.ClientKey, err)
			}
			p.tls.Certificates = []tls.Certificate{cert}
			files = append(files, certPEM, keyPEM)
		case t.ClientCert != "" || t.ClientKey != "":
			return nil, "", errf("tls: client_cert and client_key go together")
		}
		switch t.MinVersion {
		case "", "1.2":
		case "1.3":
			p.tls.MinVersion = tls.VersionTLS13
		default:
			return nil, "", errf("tls min_version %q: expected 1.2 or 1.3", t.MinVersion)
		}
	}

	if cfg.FollowRedirects < 0 || cfg.FollowRedirects > maxFollowRedirects {
		return nil, "", errf("follow_redirects %d: expected 0 to %d", cfg.FollowRedirects, maxFollowRedirects)
	}
	p.redirects = cfg.FollowRedirects

	h := sha256.New()
	enc, err := json.Marshal(keyed)
	if err != nil {
		return nil, "", errf("%v", err)
	}
	h.Write(enc)
	for _, f := range files {
		h.Write([]byte{0})
		h.Write(f)
	}
	return p, label + "\x00" + hex.EncodeToString(h.Sum(nil)), nil
}

// setProxy parses the proxy URL. Messages show it without credentials.
func (p *egressPolicy) setProxy(raw string) error {
	if raw == "" {
		return fmt.Errorf("empty after expanding placeholders")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the URL, credentials and all.
		return fmt.Errorf("expected a URL such as http://proxy.internal:3128")
	}
	shown := u.Redacted()
	if u.Scheme != "http" {
		return fmt.Errorf("%s: expected an http:// proxy URL (HTTP CONNECT)", shown)
	}
	if u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s: expected http://[user:password@]host:port and nothing more", shown)
	}
	port := uint64(80)
	if ps := u.Port(); ps != "" {
		var err error
		if port, err = parsePort(ps); err != nil {
			return fmt.Errorf("%s: bad port", shown)
		}
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil && a.Zone() != "" {
		return fmt.Errorf("%s: zoned addresses are not supported", shown)
	}
	p.proxyHost, p.proxyPort = u.Hostname(), uint16(port)
	p.proxyShown = (&url.URL{Scheme: "http", Host: u.Host}).String()
	if u.User != nil {
		pass, _ := u.User.Password()
		p.proxyAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass))
	}
	return nil
}

// parsePrefixes parses CIDRs or single addresses. A CIDR with host bits
// set is refused: in a security rule, 10.0.0.1/8 may mean 10.0.0.0/8 or
// 10.0.0.1/32, and guessing either is wrong half the time.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		pf, err := ParseEgressCIDR(s)
		if err != nil {
			return nil, err
		}
		out = append(out, pf)
	}
	return out, nil
}

// ParseEgressCIDR parses an allow or deny entry: a CIDR with its host
// bits zero, or a single IP address. IPv4-mapped IPv6 forms are turned
// into IPv4. The Caddyfile parser uses it, so a bad entry fails with its
// line.
func ParseEgressCIDR(s string) (netip.Prefix, error) {
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

// probeBind checks that this host can use a as a source address, by
// binding a UDP socket to it (closed at once). This asks the kernel the
// question the dialler will ask, so it accepts what will work: every
// address of an interface, and also 127.0.0.2 and the like on Linux
// (which routes all of 127.0.0.0/8 to the loopback interface) or
// addresses of an AnyIP route.
func probeBind(a netip.Addr) error {
	network := "udp4"
	if a.Is6() {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			return oe.Err
		}
		return err
	}
	return c.Close()
}

// hostAddrs lists this host's interface addresses for an error message.
func hostAddrs() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil || len(addrs) == 0 {
		return "unknown"
	}
	var out []string
	for _, a := range addrs {
		if pf, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, pf.Addr().String())
		}
	}
	return strings.Join(out, ", ")
}

// newEgressClient builds the transport and client of a policy: keep-alive
// pooling and HTTP/2 as for the default sender, with the policy's dialer
// (bind, destination checks, proxy), TLS and redirect rule.
func newEgressClient(p *egressPolicy) *egressClient {
	// The proxy, if any, is the dialer's business: it tunnels to the
	// checked address.
	tr := newTransport(p.dialContext, p.tls.Clone())
	return &egressClient{
		policy: p,
		tr:     tr,
		// keepAlive hides CloseIdleConnections, which retryablehttp calls
		// after every failure: the pool is shared by every route of the
		// policy.
		client: newClient(&http.Client{Transport: keepAlive{tr}, CheckRedirect: p.checkRedirect}),
	}
}

// Interface guards
var _ caddy.Destructor = (*egressClient)(nil)
