package caddyfile

import (
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/hookgate/hookgate/module/console"
)

func init() {
	httpcaddyfile.RegisterDirective("webhook_console", parseConsole)
	// After the authentication directives (basic_auth, forward_auth),
	// which must run first, and before the handlers that would answer
	// the request; with this users need no `order` line.
	httpcaddyfile.RegisterDirectiveOrder("webhook_console", httpcaddyfile.Before, "reverse_proxy")
}

// parseConsole sets up the `webhook_console [<path>]` directive (syntax
// in the package doc). The path is where the console lives on the site:
// the directive matches the path and everything under it, so the
// console's own pages (path/events/…) reach it without a matcher of the
// user's; without a path it serves the whole site.
func parseConsole(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	d := h.Dispenser
	d.Next() // consume directive name
	c := new(console.Handler)
	if d.NextArg() {
		c.Path = d.Val()
		if err := console.CheckPath(c.Path); err != nil {
			return nil, d.Errf("webhook_console: %v", err)
		}
		if d.NextArg() {
			return nil, argCount(d, "webhook_console", "at most one argument (the path)", 2+len(d.RemainingArgs()))
		}
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "trace_url":
			if err = once(d, c.TraceURL != ""); err != nil {
				return nil, err
			}
			if c.TraceURL, err = oneArg(d); err != nil {
				return nil, err
			}
			if err := console.CheckTraceURL(c.TraceURL); err != nil {
				return nil, d.Errf("%v", err)
			}
		case "user":
			if err = once(d, c.User != ""); err != nil {
				return nil, err
			}
			if c.User, err = oneArg(d); err != nil {
				return nil, err
			}
		default:
			return nil, d.Errf("unrecognized subdirective %q of webhook_console (expected trace_url or user)", d.Val())
		}
	}
	var match caddy.ModuleMap
	if p := strings.TrimRight(c.Path, "/"); p != "" {
		match = caddy.ModuleMap{"path": caddyconfig.JSON(caddyhttp.MatchPath{p, p + "/*"}, nil)}
	}
	return h.NewRoute(match, c), nil
}
