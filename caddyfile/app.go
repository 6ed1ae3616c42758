package caddyfile

import (
	"encoding/json"
	"net/http"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/hookgate/hookgate/module"
	"github.com/hookgate/hookgate/module/rules"
	"github.com/hookgate/hookgate/module/signing"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("webhooks", parseWebhooks)
}

// appName is both the global option and the app's key under "apps".
const appName = "webhooks"

// parseWebhooks parses the `webhooks` global option (syntax in the
// package doc) into a module.App. Caddy hands it the value an earlier
// `webhooks` block produced as existingVal; the new block is merged into
// it so that a config may be split (for example by `import`), and the
// merge applies the same "more than once" rules as a single block.
func parseWebhooks(d *caddyfile.Dispenser, existingVal any) (any, error) {
	d.Next() // consume option name
	app, err := existingApp(d, existingVal)
	if err != nil {
		return nil, err
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		if err := parseAppOption(d, app); err != nil {
			return nil, err
		}
	}

	return httpcaddyfile.App{
		Name:  appName,
		Value: caddyconfig.JSON(app, nil),
	}, nil
}

// existingApp decodes the App an earlier `webhooks` block produced, or
// returns a new one.
func existingApp(d *caddyfile.Dispenser, existingVal any) (*module.App, error) {
	app := new(module.App)
	if existingVal == nil {
		return app, nil
	}
	prev, ok := existingVal.(httpcaddyfile.App)
	if !ok {
		return nil, d.Errf("existing %s value of unexpected type %T", appName, existingVal)
	}
	if err := json.Unmarshal(prev.Value, app); err != nil {
		return nil, d.Errf("decoding existing %s value: %v", appName, err)
	}
	return app, nil
}

// parseAppOption parses the app-level subdirective the dispenser is on.
func parseAppOption(d *caddyfile.Dispenser, app *module.App) error {
	var err error
	switch d.Val() {
	case "storage":
		if err = once(d, app.Storage != "" || app.NATS != nil); err != nil {
			return err
		}
		err = parseStorage(d, app)

	case "retention":
		if err = once(d, app.Retention != 0); err != nil {
			return err
		}
		app.Retention, err = duration(d)

	case "dead_retention":
		if err = once(d, app.DeadRetention != 0); err != nil {
			return err
		}
		app.DeadRetention, err = duration(d)

	case "dedupe_window":
		if err = once(d, app.DedupeWindow != 0); err != nil {
			return err
		}
		app.DedupeWindow, err = duration(d)

	case "max_pending":
		if err = once(d, app.MaxPending != 0); err != nil {
			return err
		}
		app.MaxPending, err = positiveInt64(d)

	case "gc_interval":
		if err = once(d, app.GCInterval != 0); err != nil {
			return err
		}
		app.GCInterval, err = duration(d)

	case "min_free":
		if err = once(d, app.MinFree != 0); err != nil {
			return err
		}
		app.MinFree, err = size(d)

	case "max_storage":
		if err = once(d, app.MaxStorage != 0); err != nil {
			return err
		}
		app.MaxStorage, err = size(d)

	case "keep_unmatched":
		if err = once(d, app.KeepUnmatched); err != nil {
			return err
		}
		app.KeepUnmatched = true
		err = noArgs(d)

	case "route":
		err = parseRoute(d, app)

	case "egress":
		err = parseAppEgress(d, app)

	default:
		return d.Errf("unrecognized subdirective %q", d.Val())
	}
	return err
}

// parseRoute parses a `route <name> { ... }` block into app.Routes.
func parseRoute(d *caddyfile.Dispenser, app *module.App) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	name := d.Val()
	if err := module.ValidRouteName(name); err != nil {
		return d.Errf("route: %v", err)
	}
	if _, dup := app.Routes[name]; dup {
		return d.Errf("route %q is defined more than once", name)
	}
	if d.NextArg() {
		return d.ArgErr()
	}

	// The route gets a dispenser of its own (its segment starts at the
	// name) so that the checks after the block can point at the `route`
	// line rather than at the closing brace.
	rd := d.NewFromNextSegment()
	rd.Next() // consume the name

	r := new(module.Route)
	for rd.NextBlock(0) {
		if err := parseRouteOption(rd, name, r); err != nil {
			return err
		}
	}

	rd.Reset()
	rd.Next()
	if err := r.Validate(); err != nil {
		return rd.Errf("route %q: %v", name, err)
	}

	if app.Routes == nil {
		app.Routes = make(map[string]*module.Route)
	}
	app.Routes[name] = r
	return nil
}

// parseRouteOption parses the route subdirective the dispenser is on.
// What can be checked without the rest of the config (URLs, header
// values, CEL expressions) is checked here, so that the error carries
// the file and line.
func parseRouteOption(d *caddyfile.Dispenser, name string, r *module.Route) error {
	var err error
	switch d.Val() {
	case "description":
		if err = once(d, r.Description != ""); err != nil {
			return err
		}
		r.Description, err = oneArg(d)

	case "topics":
		var topics []string
		if topics, err = someArgs(d); err != nil {
			return err
		}
		for _, t := range topics {
			if _, err := rules.ParseTopic(t); err != nil {
				return d.Errf("%v", err)
			}
		}
		r.Topics = append(r.Topics, topics...)

	case "url":
		if err = once(d, r.URL != ""); err != nil {
			return err
		}
		if r.URL, err = oneArg(d); err != nil {
			return err
		}
		if err := module.CheckURL(r.URL); err != nil {
			return d.Err(err.Error())
		}

	case "header":
		err = parseHeader(d, r)

	case "timeout":
		if err = once(d, r.Timeout != 0); err != nil {
			return err
		}
		r.Timeout, err = duration(d)

	case "concurrency":
		if err = once(d, r.Concurrency != 0); err != nil {
			return err
		}
		r.Concurrency, err = positiveInt(d)

	case "retry":
		if err = once(d, r.Retry != nil); err != nil {
			return err
		}
		r.Retry, err = parseRetry(d)

	case "when":
		if err = nonEmptyOnce(d, &r.When); err == nil {
			if _, cerr := rules.CompileRule(name, r.When); cerr != nil {
				return d.Err(cerr.Error())
			}
		}

	case "transform":
		if err = nonEmptyOnce(d, &r.Transform); err == nil {
			// The content type (maybe on a later line) does not change
			// what compiles.
			if _, cerr := rules.CompileTransform(name, r.Transform, ""); cerr != nil {
				return d.Err(cerr.Error())
			}
		}

	case "content_type":
		err = parseContentType(d, r)

	case "sign":
		err = parseSign(d, r)

	case "trace_propagation":
		err = parseTracePropagation(d, r)

	case "egress":
		err = parseRouteEgress(d, r)

	case "breaker":
		err = parseBreaker(d, r)

	case "rate":
		err = parseRate(d, r)

	case "ordered":
		if err = parseOrdered(d, r); err == nil && r.Ordered != "*" {
			if _, cerr := rules.CompileOrderKey(name, r.Ordered); cerr != nil {
				return d.Err(cerr.Error())
			}
		}

	case "verify_endpoint":
		err = flagOnce(d, &r.VerifyEndpoint)

	case "disabled":
		err = flagOnce(d, &r.Disabled)

	case "sample_event":
		err = parseSampleEvent(d, r)

	default:
		return d.Errf("unrecognized subdirective %q", d.Val())
	}
	return err
}

// parseHeader parses `header <name> <value>` and appends it to the
// route's headers under the canonical name, as http.Header.Add would, so
// that `x-source` and `X-Source` end up in one list.
func parseHeader(d *caddyfile.Dispenser, r *module.Route) error {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return argCount(d, "header", "a name and a value (quote a value with spaces)", len(args))
	}
	if err := noBlock(d, "header"); err != nil {
		return err
	}
	if !signing.ValidHeaderName(args[0]) {
		return d.Errf("invalid header name %q: expected letters, digits and %s", args[0], signing.TokenPunct)
	}
	if _, err := rules.ParseTemplate(args[1], false); err != nil {
		return d.Errf("header %s: %v", args[0], err)
	}
	if err := module.CheckHeaderValue(args[1]); err != nil {
		return d.Errf("header %s: %v", args[0], err)
	}
	if r.Headers == nil {
		r.Headers = make(http.Header)
	}
	r.Headers.Add(args[0], args[1])
	return nil
}

// parseRetry parses a `retry { ... }` block.
func parseRetry(d *caddyfile.Dispenser) (*module.RetryPolicy, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}

	// Own dispenser, as for routes, to report cross-field errors at the
	// `retry` line.
	rd := d.NewFromNextSegment()
	rd.Next() // consume "retry"

	p := new(module.RetryPolicy)
	for rd.NextBlock(0) {
		if err := parseRetryOption(rd, p); err != nil {
			return nil, err
		}
	}

	// Backoff shapes the attempts form only; with the default schedule it
	// would be silently ignored.
	if p.BackoffMin != 0 && p.Attempts == 0 {
		rd.Reset()
		rd.Next()
		return nil, rd.Err("retry: backoff needs attempts")
	}
	return p, nil
}

// parseRetryOption parses the retry subdirective the dispenser is on.
func parseRetryOption(d *caddyfile.Dispenser, p *module.RetryPolicy) error {
	var err error
	switch d.Val() {
	case "schedule":
		if err = once(d, len(p.Schedule) > 0); err != nil {
			return err
		}
		if p.Attempts != 0 || p.BackoffMin != 0 {
			return d.Err("retry: use either schedule or attempts with backoff, not both")
		}
		var args []string
		if args, err = someArgs(d); err != nil {
			return err
		}
		for _, v := range args {
			dur, err := parseDuration(d, "schedule delay", v)
			if err != nil {
				return err
			}
			p.Schedule = append(p.Schedule, dur)
		}

	case "attempts":
		if err = once(d, p.Attempts != 0); err != nil {
			return err
		}
		if len(p.Schedule) > 0 {
			return d.Err("retry: use either schedule or attempts with backoff, not both")
		}
		p.Attempts, err = positiveInt(d)

	case "backoff":
		if err = once(d, p.BackoffMin != 0); err != nil {
			return err
		}
		if len(p.Schedule) > 0 {
			return d.Err("retry: use either schedule or attempts with backoff, not both")
		}
		args := d.RemainingArgs()
		if len(args) != 2 {
			return argCount(d, "backoff", "a minimum and a maximum", len(args))
		}
		if err = noBlock(d, "backoff"); err != nil {
			return err
		}
		if p.BackoffMin, err = parseDuration(d, "backoff minimum", args[0]); err != nil {
			return err
		}
		if p.BackoffMax, err = parseDuration(d, "backoff maximum", args[1]); err != nil {
			return err
		}
		if p.BackoffMin > p.BackoffMax {
			return d.Errf("invalid backoff %s %s: minimum exceeds maximum", args[0], args[1])
		}

	case "max_age":
		if err = once(d, p.MaxAge != 0); err != nil {
			return err
		}
		p.MaxAge, err = duration(d)

	default:
		return d.Errf("unrecognized subdirective %q", d.Val())
	}
	return err
}

// Interface guards
var _ httpcaddyfile.UnmarshalGlobalFunc = parseWebhooks
