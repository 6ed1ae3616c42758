package egress

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// policy is a Policy compiled for the dial path.
type policy struct {
	// label names the policy in errors: `egress policy "default"`.
	label string
	// bind4 and bind6 are the source addresses; zero when unset.
	bind4, bind6 netip.Addr
	allow, deny  []netip.Prefix
	// only is nil without allow_only.
	only *allowOnly
	// open is allow and the CIDRs of allow_only: what opens the
	// default-denied ranges.
	open []netip.Prefix
	// proxy is nil without a proxy; proxyTLS is set for an https:// one.
	proxy         *proxyURL
	proxyTLS      *tls.Config
	proxyResolves bool
	userAgent     string
	tls           *tls.Config
	redirects     int
	// lookup resolves destination and proxy names; tests replace it.
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// compile checks and compiles a policy. key identifies the result for
// the client pool: label plus a hash of everything that went into it,
// file contents included, so a reload after a certificate renewal builds
// a new transport.
func compile(label string, cfg *Policy, userAgent string) (*policy, string, error) {
	p := &policy{label: label, lookup: lookupNetIP, userAgent: userAgent}
	errf := func(format string, args ...any) error {
		return fmt.Errorf("%s: "+format, append([]any{label}, args...)...)
	}
	if err := cfg.Validate(); err != nil {
		return nil, "", errf("%v", err)
	}
	repl := caddy.NewReplacer()
	// keyed is the policy as compiled: placeholders expanded. It is
	// hashed, never shown, since it holds the proxy credentials.
	keyed := *cfg
	var files [][]byte

	var err error
	p.bind4, p.bind6, _ = parseBind(cfg.Bind)
	for _, a := range []netip.Addr{p.bind4, p.bind6} {
		if !a.IsValid() {
			continue
		}
		if err := probeBind(a); err != nil {
			return nil, "", errf("bind %s: this host has no such address (%v); its addresses are %s", a, err, hostAddrs())
		}
	}
	p.allow, _ = parsePrefixes(cfg.Allow)
	p.deny, _ = parsePrefixes(cfg.Deny)
	p.only = compileAllowOnly(cfg.AllowOnly)
	p.open = p.allow
	if p.only != nil {
		p.open = append(slices.Clip(p.allow), p.only.cidrs...)
	}

	if cfg.Proxy != "" {
		raw := repl.ReplaceKnown(cfg.Proxy, "")
		keyed.Proxy = raw
		if p.proxy, err = parseProxyURL(raw); err != nil {
			return nil, "", errf("invalid proxy URL: %v", err)
		}
		p.proxyResolves = cfg.ProxyResolves
		if p.proxy.tls {
			p.proxyTLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: p.proxy.host}
			if len(cfg.ProxyCA) > 0 {
				keyed.ProxyCA = nil
				pool := x509.NewCertPool()
				for _, f := range cfg.ProxyCA {
					f = repl.ReplaceKnown(f, "")
					keyed.ProxyCA = append(keyed.ProxyCA, f)
					pem, err := os.ReadFile(f)
					if err != nil {
						return nil, "", errf("proxy_ca: %v", err)
					}
					if !pool.AppendCertsFromPEM(pem) {
						return nil, "", errf("proxy_ca %s: no PEM certificate found", f)
					}
					files = append(files, pem)
				}
				p.proxyTLS.RootCAs = pool
			}
		} else if len(cfg.ProxyCA) > 0 {
			return nil, "", errf("proxy_ca needs an https:// proxy")
		}
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
		if t.ClientCert != "" {
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
		}
		if t.MinVersion == "1.3" {
			p.tls.MinVersion = tls.VersionTLS13
		}
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
