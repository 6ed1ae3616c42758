package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lookupNetIP resolves a host name with Go's resolver. Policies copy it
// when they are compiled; tests give a policy their own.
var lookupNetIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err == nil && len(addrs) == 0 {
		err = &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return addrs, err
}

// dialContext is the transport's dialer. It resolves the destination
// itself, so that the addresses it checks are the addresses it dials
// (there is no second lookup for a rebinding name server to answer
// differently), tries the allowed ones in order, and checks each again in
// the socket's Control hook just before connect. With a proxy, it dials
// the proxy (checked the same way) and opens a CONNECT tunnel to the
// checked destination address.
func (p *policy) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("dial %s: bad port", addr)
	}
	if p.proxy != nil {
		return p.dialProxy(ctx, host, uint16(port))
	}
	return p.dialHost(ctx, host, uint16(port), toDest)
}

// allowed resolves host (an IP address, in any spelling hostIP reads,
// stands for itself) and returns the addresses the policy allows, in
// the resolver's order, and what they are reached for: a destination
// whose name allow_only lists comes back as toListedName. With none it
// returns a *DeniedError naming every address and the rule that refused
// it; a failed lookup returns the resolver's *net.DNSError.
func (p *policy) allowed(ctx context.Context, host string, r reach) ([]netip.Addr, reach, error) {
	if a, ok, err := p.literal(host, r); ok || err != nil {
		if err != nil {
			return nil, r, err
		}
		return []netip.Addr{a}, r, nil
	}
	if r == toDest && p.only != nil && p.only.lists(host) {
		r = toListedName
	}
	addrs, err := p.lookup(ctx, host)
	if err != nil {
		return nil, r, err
	}
	ok := addrs[:0:0]
	var refused []string
	for _, a := range addrs {
		if why := p.refusal(a, r); why != "" {
			refused = append(refused, a.String()+": "+why)
			continue
		}
		ok = append(ok, a)
	}
	if len(ok) == 0 {
		if len(refused) == 0 {
			return nil, r, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return nil, r, p.deniedError(host + " resolved to " + strings.Join(refused, "; "))
	}
	return ok, r, nil
}

// literal checks a host given as an IP address: ok reports that host is
// one (in any spelling hostIP reads), err that the policy refuses it, or
// that it is a numeric name that is no valid address. An address never
// matches a host entry of allow_only.
func (p *policy) literal(host string, r reach) (a netip.Addr, ok bool, err error) {
	a, numeric := hostIP(host)
	if numeric {
		return a, true, p.deniedError(host + ": a numeric host name that is not a valid IP address")
	}
	if !a.IsValid() {
		return a, false, nil
	}
	shown := host
	if a.String() != host {
		// A legacy spelling: say what it means.
		shown = host + " (" + a.String() + ")"
	}
	if why := p.refusal(a, r); why != "" {
		return a, true, p.deniedError(shown + ": " + why)
	}
	return a, true, nil
}

func (p *policy) deniedError(what string) *DeniedError {
	return &DeniedError{Reason: what + " (" + p.label + ")"}
}

// dialHost connects to the first allowed address of host that answers.
func (p *policy) dialHost(ctx context.Context, host string, port uint16, r reach) (net.Conn, error) {
	addrs, r, err := p.allowed(ctx, host, r)
	if err != nil {
		return nil, err
	}
	var first error
	for i, a := range addrs {
		c, err := p.dialAddr(ctx, netip.AddrPortFrom(a.Unmap(), port), len(addrs)-i, r)
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// dialAddr connects to one checked address from the policy's bind
// address. left is how many addresses remain to try (this one included):
// as Go's own dialer does, each gets a share of the time left, so one
// black-holed address does not use up the whole attempt.
func (p *policy) dialAddr(ctx context.Context, ap netip.AddrPort, left int, r reach) (net.Conn, error) {
	d := net.Dialer{
		Timeout:   dialTimeout,
		KeepAlive: tcpKeepAlive,
		Control:   p.control(r),
	}
	src := p.bind6
	if ap.Addr().Is4() {
		src = p.bind4
	}
	if src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice(), Zone: src.Zone()}
	}
	if deadline, ok := ctx.Deadline(); ok && left > 1 {
		share := time.Until(deadline) / time.Duration(left)
		if share < 2*time.Second {
			share = 2 * time.Second
		}
		if share < time.Until(deadline) {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, share)
			defer cancel()
		}
	}
	return d.DialContext(ctx, "tcp", ap.String())
}

// control returns the hook that runs on every socket just before
// connect, with the address about to be dialled: the last check,
// whatever path led here.
func (p *policy) control(r reach) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return p.deniedError(address + ": not an IP address")
		}
		if why := p.refusal(ap.Addr(), r); why != "" {
			return p.deniedError(ap.Addr().String() + ": " + why)
		}
		return nil
	}
}

// dialProxy opens a CONNECT tunnel through the proxy to host:port. The
// destination is resolved and checked here, and the tunnel opened to the
// checked address, unless the proxy resolves names. Even then a host
// that is an address in a legacy spelling (2130706434, 0x7f.1) is
// checked here and sent as the address it means, since the proxy's
// resolver would read it as one, unchecked; and allow_only's host
// entries are checked against the name sent.
func (p *policy) dialProxy(ctx context.Context, host string, port uint16) (net.Conn, error) {
	var targets []string
	if p.proxyResolves && isName(host) {
		if p.only != nil && !p.only.lists(host) {
			return nil, p.deniedError(host + ": not in allow_only (the proxy resolves names, so only host entries can match)")
		}
		targets = []string{net.JoinHostPort(host, strconv.Itoa(int(port)))}
	} else {
		addrs, _, err := p.allowed(ctx, host, toDest)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			targets = append(targets, netip.AddrPortFrom(a.Unmap(), port).String())
		}
	}
	var first error
	for _, t := range targets {
		c, err := p.tunnel(ctx, t)
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		var eg *DeniedError
		if errors.As(err, &eg) || ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// tunnel dials the proxy (over TLS for an https:// proxy) and asks it to
// CONNECT to target.
func (p *policy) tunnel(ctx context.Context, target string) (net.Conn, error) {
	raw, err := p.dialHost(ctx, p.proxy.host, p.proxy.port, toProxy)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", p.proxy.shown, err)
	}
	// Cut the handshakes short when the attempt ends.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	conn := raw
	fail := func(err error) (net.Conn, error) {
		stop()
		conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("proxy %s: CONNECT %s: %w", p.proxy.shown, target, ctx.Err())
		}
		return nil, err
	}
	if p.proxyTLS != nil {
		tc := tls.Client(raw, p.proxyTLS)
		conn = tc
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(fmt.Errorf("proxy %s: TLS handshake: %w", p.proxy.shown, err))
		}
	}
	hdr := make(http.Header)
	if p.proxy.auth != "" {
		hdr.Set("Proxy-Authorization", p.proxy.auth)
	}
	if p.userAgent != "" {
		hdr.Set("User-Agent", p.userAgent)
	}
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: target},
		Host:   target,
		Header: hdr,
	}
	if err := req.Write(conn); err != nil {
		return fail(fmt.Errorf("proxy %s: CONNECT %s: %w", p.proxy.shown, target, err))
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return fail(fmt.Errorf("proxy %s: CONNECT %s: %w", p.proxy.shown, target, err))
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		if resp.StatusCode == http.StatusForbidden {
			// The proxy's own policy said no: as final as ours.
			return fail(&DeniedError{Reason: "proxy " + p.proxy.shown + " refused CONNECT " + target + ": " + resp.Status + " (" + p.label + ")"})
		}
		// 407 (credentials being rotated), 502, 503…: worth a retry.
		return fail(fmt.Errorf("proxy %s: CONNECT %s: %s", p.proxy.shown, target, resp.Status))
	}
	if !stop() {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: CONNECT %s: %w", p.proxy.shown, target, ctx.Err())
	}
	if br.Buffered() > 0 {
		// The server spoke first (it may, once the tunnel is up): keep
		// what was read along with the response.
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// bufferedConn is a connection whose first bytes sit in a reader.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

type signatureKey struct{}

// KeepOnRedirect returns ctx saying that header (a canonical name) holds
// the request's signature. A redirect to another host drops every header
// whose name says it may carry a credential (SensitiveHeader), except this
// one: a signature proves this body and nothing else, and the receiver the
// redirect names needs it.
func KeepOnRedirect(ctx context.Context, header string) context.Context {
	return context.WithValue(ctx, signatureKey{}, header)
}

// checkRedirect is the client's redirect rule: redirects are followed
// only when the policy says so, only 307/308 (which keep the POST and its
// body), never from https to http, and each target is checked before the
// request goes out (a pooled connection to it would skip the dialer).
func (p *policy) checkRedirect(req *http.Request, via []*http.Request) error {
	if p.redirects == 0 || req.Method != via[0].Method {
		// Off, or a 301/302/303 that would resend the POST as a GET
		// without its body: the 3xx is the answer (class http_3xx).
		return http.ErrUseLastResponse
	}
	if len(via) > p.redirects {
		return p.deniedError(fmt.Sprintf("too many redirects: the redirect to %s would be number %d and the policy follows %d",
			req.URL.Host, len(via), p.redirects))
	}
	if prev := via[len(via)-1]; prev.URL.Scheme == "https" && req.URL.Scheme != "https" {
		return p.deniedError("redirect from https to " + req.URL.Scheme + "://" + req.URL.Host + " refused")
	}
	host := req.URL.Hostname()
	if host == "" {
		return p.deniedError("redirect to a URL without a host refused")
	}
	// What the client adds or keeps that the next host has no business
	// with: the Referer it sets holds the whole URL, a token in its query
	// too, and it drops Authorization and Cookie but not the route's own
	// credential headers (X-Api-Key). The request's signature stays (see
	// KeepOnRedirect): it signs this body and nothing else.
	req.Header.Del("Referer")
	if req.URL.Host != via[0].URL.Host {
		keep, _ := req.Context().Value(signatureKey{}).(string)
		for k := range req.Header {
			if SensitiveHeader(k) && k != keep {
				req.Header.Del(k)
			}
		}
	}
	if p.proxy != nil && p.proxyResolves && isName(host) {
		if p.only != nil && !p.only.lists(host) {
			return p.deniedError(host + ": not in allow_only (the proxy resolves names, so only host entries can match)")
		}
		return nil
	}
	_, _, err := p.allowed(req.Context(), host, toDest)
	return err
}
