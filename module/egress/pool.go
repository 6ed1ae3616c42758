package egress

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Client is a compiled policy with its transport and HTTP client, shared
// by every route (in every loaded config) that uses the same policy
// unchanged.
type Client struct {
	policy *policy
	tr     *http.Transport
	hc     *http.Client
}

// HTTP is the client deliveries under this policy are sent with. Its
// CloseIdleConnections does nothing: the pool is shared by every route of
// the policy, so one route's failure must not close the others'
// connections.
func (c *Client) HTTP() *http.Client { return c.hc }

// FollowsRedirects reports whether the policy's client follows redirects
// (follow_redirects above 0). One that does not answers every redirect
// with the 3xx itself: its CheckRedirect returns http.ErrUseLastResponse
// whatever the request.
func (c *Client) FollowsRedirects() bool { return c.policy.redirects > 0 }

// Label names the policy as errors do: `egress policy "partner"`,
// `inline egress policy of route "erp"` or `built-in default egress
// policy`.
func (c *Client) Label() string { return c.policy.label }

// Destruct closes the idle connections of a transport no config uses any
// more. Requests still running on it finish.
func (c *Client) Destruct() error {
	c.tr.CloseIdleConnections()
	return nil
}

// clients holds one Client per policy, keyed by the policy's label and a
// hash of its compiled inputs (config with placeholders expanded, and
// the contents of the files it reads). A reload that leaves a policy
// unchanged gets the same transport, so its pooled connections live on;
// a changed policy gets a new one, and the old one is closed when the
// last config using it is released.
var clients = caddy.NewUsagePool()

// Choice is one route's pick of egress policy.
type Choice struct {
	// Route names the route in errors.
	Route string
	// Name is a policy of the set Provision is given; empty for the
	// default.
	Name string
	// Inline is a policy for this route alone; Name must then be empty.
	Inline *Policy
}

// Provision compiles the named policies and returns the client of each
// choice, in order: the named policy, the inline one, else the policy
// named "default", else the built-in default (an empty policy, which
// refuses private, loopback, link-local and metadata addresses). Every
// named policy is compiled, used or not, so that a broken one fails the
// load; clients are made (or taken from the pool) for those in use.
// userAgent is sent to proxies on CONNECT.
//
// keys are the pool entries acquired: give them to Release when the
// config is cleaned up. On error nothing stays acquired.
func Provision(policies map[string]*Policy, choices []Choice, userAgent string) (out []*Client, keys []string, err error) {
	names := make([]string, 0, len(policies))
	for name := range policies {
		names = append(names, name)
	}
	slices.Sort(names)
	defer func() {
		if err != nil {
			Release(keys)
			out, keys = nil, nil
		}
	}()

	type compiled struct {
		p   *policy
		key string
	}
	byLabel := make(map[string]compiled, len(names))
	for _, name := range names {
		cfg := policies[name]
		if err := CheckName(name); err != nil {
			return nil, nil, err
		}
		if cfg == nil {
			return nil, nil, fmt.Errorf("egress policy %q: empty definition", name)
		}
		p, key, err := compile(namedLabel(name), cfg, userAgent)
		if err != nil {
			return nil, nil, err
		}
		byLabel[namedLabel(name)] = compiled{p, key}
	}

	inUse := make(map[string]*Client)
	acquire := func(label string, cfg *Policy) (*Client, error) {
		if c, ok := inUse[label]; ok {
			return c, nil
		}
		cp, ok := byLabel[label]
		if !ok {
			p, key, err := compile(label, cfg, userAgent)
			if err != nil {
				return nil, err
			}
			cp = compiled{p, key}
		}
		val, _, err := clients.LoadOrNew(cp.key, func() (caddy.Destructor, error) {
			return newClient(cp.p), nil
		})
		if err != nil {
			return nil, err
		}
		keys = append(keys, cp.key)
		c := val.(*Client)
		inUse[label] = c
		return c, nil
	}

	out = make([]*Client, 0, len(choices))
	for _, ch := range choices {
		var c *Client
		switch {
		case ch.Inline != nil && ch.Name != "":
			return nil, keys, fmt.Errorf("route %s: names egress policy %q and defines one inline; use one or the other", ch.Route, ch.Name)
		case ch.Inline != nil:
			c, err = acquire(fmt.Sprintf("inline egress policy of route %q", ch.Route), ch.Inline)
		case ch.Name != "":
			cfg, ok := policies[ch.Name]
			if !ok {
				return nil, keys, fmt.Errorf("route %s: egress policy %q is not defined (defined: %s)", ch.Route, ch.Name, listOrNone(names))
			}
			c, err = acquire(namedLabel(ch.Name), cfg)
		case policies[DefaultName] != nil:
			c, err = acquire(namedLabel(DefaultName), policies[DefaultName])
		default:
			c, err = acquire("built-in default egress policy", &Policy{})
		}
		if err != nil {
			return nil, keys, err
		}
		out = append(out, c)
	}
	return out, keys, nil
}

// Release lets go of the pool entries a Provision acquired. A transport
// no loaded config uses any more has its idle connections closed.
func Release(keys []string) {
	for _, key := range keys {
		_, _ = clients.Delete(key)
	}
}

func namedLabel(name string) string { return fmt.Sprintf("egress policy %q", name) }

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// NewTransport is the HTTP transport under every delivery client:
// keep-alive pooling and HTTP/2, with the given dialer and TLS config. No
// proxy from the environment: a gateway must not pick up HTTP_PROXY by
// surprise (a policy's proxy is its dialer's business).
func NewTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error), tlsConf *tls.Config) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// NewHTTPClient wraps a shared transport in a client whose
// CloseIdleConnections leaves the transport alone: retry libraries call
// it after every failed request, which would close the pooled
// connections of every route using the transport.
func NewHTTPClient(tr http.RoundTripper, checkRedirect func(*http.Request, []*http.Request) error) *http.Client {
	return &http.Client{Transport: keepAlive{tr}, CheckRedirect: checkRedirect}
}

// keepAlive hides the transport's CloseIdleConnections.
type keepAlive struct{ rt http.RoundTripper }

func (k keepAlive) RoundTrip(r *http.Request) (*http.Response, error) { return k.rt.RoundTrip(r) }

// newClient builds the transport and client of a policy: the policy's
// dialer (bind, destination checks, proxy), TLS and redirect rule.
func newClient(p *policy) *Client {
	tr := NewTransport(p.dialContext, p.tls.Clone())
	return &Client{policy: p, tr: tr, hc: NewHTTPClient(tr, p.checkRedirect)}
}

// Interface guards
var _ caddy.Destructor = (*Client)(nil)

// Check reports whether the policy lets a connection go to address a
// named by its address (not through a host name): nil, or the
// *DeniedError a dial would fail with.
func (c *Client) Check(a netip.Addr) error {
	if why := c.policy.refusal(a, toDest); why != "" {
		return c.policy.deniedError(a.String() + ": " + why)
	}
	return nil
}
