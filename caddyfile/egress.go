package caddyfile

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/hookgate/hookgate/module"
	"github.com/hookgate/hookgate/module/egress"
)

// Egress policies, in the webhooks block:
//
//	egress <name> {
//		bind   <ip...>
//		allow  <cidr|ip...>
//		deny   <cidr|ip...>
//		allow_only <cidr|ip|host|*.suffix...>
//		proxy  <http://|https://[user:password@]host:port>
//		proxy_ca <file...>
//		proxy_resolves
//		tls {
//			ca          <file...>
//			client_cert <cert file> <key file>
//			min_version 1.2|1.3
//		}
//		follow_redirects <n>
//	}
//
// and in a route, either `egress <name>` or the same block inline,
// `egress { ... }`. Values are checked by the egress package's
// validators, so a Caddyfile and a JSON config fail with the same words.

// parseAppEgress parses `egress <name> { ... }` into app.Egress.
func parseAppEgress(d *caddyfile.Dispenser, app *module.App) error {
	if !d.NextArg() {
		return d.Errf("egress takes a policy name, as in `egress default { ... }`")
	}
	name := d.Val()
	if err := egress.CheckName(name); err != nil {
		return d.Err(err.Error())
	}
	if _, dup := app.Egress[name]; dup {
		return d.Errf("egress policy %q is defined more than once", name)
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	p, err := parseEgressBlock(d, "egress "+name)
	if err != nil {
		return err
	}
	if app.Egress == nil {
		app.Egress = make(map[string]*egress.Policy)
	}
	app.Egress[name] = p
	return nil
}

// parseRouteEgress parses a route's `egress <name>` or `egress { ... }`.
func parseRouteEgress(d *caddyfile.Dispenser, r *module.Route) error {
	if err := once(d, r.Egress != "" || r.EgressPolicy != nil); err != nil {
		return err
	}
	// The whole line and its block, so that a block can be told apart
	// from none (an empty block is an empty policy: the defaults).
	seg := d.NextSegment()
	// NextSegment consumes an empty block ({ }) without returning it,
	// leaving the dispenser on its closing brace.
	emptyBlock := len(seg) == 1 && d.Val() == "}"
	ed := caddyfile.NewDispenser(seg)
	ed.Next() // "egress"
	args := ed.RemainingArgs()
	switch {
	case len(args) > 1:
		return ed.Errf("egress takes one policy name or a block, got %d arguments", len(args))
	case len(args) == 1:
		if err := egress.CheckName(args[0]); err != nil {
			return ed.Err(err.Error())
		}
		if len(seg) > 2 {
			return ed.Err("egress takes a policy name or a block, not both")
		}
		r.Egress = args[0]
		return nil
	case emptyBlock:
		// An empty policy: the built-in defaults, even where a policy
		// named default exists.
		r.EgressPolicy = new(egress.Policy)
		return nil
	case len(seg) == 1:
		return ed.Err("egress takes a policy name (egress default) or a block (egress { allow 10.20.0.0/16 })")
	}
	ed.Reset()
	ed.Next()
	p, err := parseEgressBlock(ed, "egress")
	if err != nil {
		return err
	}
	r.EgressPolicy = p
	return nil
}

// parseEgressBlock parses the block of an egress policy. The dispenser
// is on the last token before the block (the line's end, for a policy
// without one); what names the policy in errors.
func parseEgressBlock(d *caddyfile.Dispenser, what string) (*egress.Policy, error) {
	// An own dispenser, so that cross-field errors can point at the
	// `egress` line.
	ed := d.NewFromNextSegment()
	ed.Next()
	p := new(egress.Policy)
	redirectsSet := false
	for ed.NextBlock(0) {
		if err := parseEgressOption(ed, p, &redirectsSet); err != nil {
			return nil, err
		}
	}
	// Options that go together are checked once the block is read.
	if err := p.Validate(); err != nil {
		ed.Reset()
		ed.Next()
		return nil, ed.Errf("%s: %v", what, err)
	}
	return p, nil
}

// parseEgressOption parses the egress subdirective the dispenser is on.
func parseEgressOption(d *caddyfile.Dispenser, p *egress.Policy, redirectsSet *bool) error {
	var err error
	switch d.Val() {
	case "bind":
		var args []string
		if args, err = someArgs(d); err != nil {
			return err
		}
		p.Bind = append(p.Bind, args...)
		if err = egress.CheckBind(p.Bind); err != nil {
			return d.Err(err.Error())
		}

	case "allow", "deny":
		name := d.Val()
		var args []string
		if args, err = someArgs(d); err != nil {
			return err
		}
		for _, a := range args {
			if _, perr := egress.ParseCIDR(a); perr != nil {
				return d.Errf("invalid %s entry %v", name, perr)
			}
		}
		if name == "allow" {
			p.Allow = append(p.Allow, args...)
		} else {
			p.Deny = append(p.Deny, args...)
		}

	case "allow_only":
		var args []string
		if args, err = someArgs(d); err != nil {
			return err
		}
		for _, a := range args {
			if perr := egress.CheckAllowOnly(a); perr != nil {
				return d.Err(perr.Error())
			}
		}
		p.AllowOnly = append(p.AllowOnly, args...)

	case "proxy_ca":
		var files []string
		if files, err = someArgs(d); err != nil {
			return err
		}
		p.ProxyCA = append(p.ProxyCA, files...)

	case "proxy":
		if err = once(d, p.Proxy != ""); err != nil {
			return err
		}
		var v string
		if v, err = oneArg(d); err != nil {
			return err
		}
		if err = egress.CheckProxyURL(v); err != nil {
			return d.Errf("invalid proxy URL: %v", err)
		}
		p.Proxy = v

	case "proxy_resolves":
		if err = once(d, p.ProxyResolves); err != nil {
			return err
		}
		p.ProxyResolves = true
		err = noArgs(d)

	case "tls":
		if err = once(d, p.TLS != nil); err != nil {
			return err
		}
		p.TLS, err = parseEgressTLS(d)

	case "follow_redirects":
		if err = once(d, *redirectsSet); err != nil {
			return err
		}
		*redirectsSet = true
		var v string
		if v, err = oneArg(d); err != nil {
			return err
		}
		n, perr := strconv.Atoi(v)
		if perr == nil {
			perr = egress.CheckFollowRedirects(n)
		}
		if perr != nil {
			return d.Errf("invalid follow_redirects %q: expected a number of redirects from 0 (off) to %d", v, egress.MaxFollowRedirects)
		}
		p.FollowRedirects = n

	default:
		return d.Errf("unrecognized subdirective %q", d.Val())
	}
	return err
}

// parseEgressTLS parses a policy's `tls { ... }` block.
func parseEgressTLS(d *caddyfile.Dispenser) (*egress.TLS, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	td := d.NewFromNextSegment()
	td.Next()
	t := new(egress.TLS)
	for td.NextBlock(0) {
		var err error
		switch td.Val() {
		case "ca":
			var files []string
			if files, err = someArgs(td); err != nil {
				return nil, err
			}
			t.CA = append(t.CA, files...)

		case "client_cert":
			if err = once(td, t.ClientCert != ""); err != nil {
				return nil, err
			}
			args := td.RemainingArgs()
			if len(args) != 2 {
				return nil, argCount(td, "client_cert", "a certificate file and a key file", len(args))
			}
			if err = noBlock(td, "client_cert"); err != nil {
				return nil, err
			}
			t.ClientCert, t.ClientKey = args[0], args[1]

		case "min_version":
			if err = once(td, t.MinVersion != ""); err != nil {
				return nil, err
			}
			var v string
			if v, err = oneArg(td); err != nil {
				return nil, err
			}
			if v == "" {
				return nil, td.ArgErr()
			}
			if err = egress.CheckMinVersion(v); err != nil {
				return nil, td.Err(err.Error())
			}
			t.MinVersion = v

		case "insecure_skip_verify":
			return nil, td.Err("insecure_skip_verify is not offered: trust the endpoint's CA with `ca <file>` instead")

		default:
			return nil, td.Errf("unrecognized subdirective %q", td.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}
