package caddyfile

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/hookgate/hookgate/module"
)

// The route options that steer delivery rather than shape requests:
// breaker, rate, ordered, verify_endpoint and disabled.

// parseBreaker parses `breaker <n>|off [{ cooldown <duration> }]`.
// off is stored as -1, since zero means the default.
func parseBreaker(d *caddyfile.Dispenser, r *module.Route) error {
	if err := once(d, r.Breaker != 0); err != nil {
		return err
	}
	args := d.RemainingArgs()
	if len(args) != 1 {
		return argCount(d, "breaker", "a number of consecutive failures or off", len(args))
	}
	if args[0] == "off" {
		r.Breaker = -1
		return noBlock(d, "breaker")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return d.Errf("invalid breaker %q: expected a number of consecutive failures (at least 1) or off", args[0])
	}
	r.Breaker = n
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "cooldown":
			if err := once(d, r.BreakerCooldown != 0); err != nil {
				return err
			}
			if r.BreakerCooldown, err = duration(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized breaker option %q (expected cooldown)", d.Val())
		}
	}
	return nil
}

// parseRate parses `rate <n>/s|<n>/m`.
func parseRate(d *caddyfile.Dispenser, r *module.Route) error {
	if err := once(d, r.Rate != ""); err != nil {
		return err
	}
	v, err := oneArg(d)
	if err != nil {
		return err
	}
	if err := module.ValidRate(v); err != nil {
		return d.Errf("invalid %v", err)
	}
	r.Rate = v
	return nil
}

// parseOrdered parses `ordered` (the whole route in ingest order) or
// `ordered <cel expression>` (one sequence per key).
func parseOrdered(d *caddyfile.Dispenser, r *module.Route) error {
	if err := once(d, r.Ordered != ""); err != nil {
		return err
	}
	args := d.RemainingArgs()
	switch len(args) {
	case 0:
		r.Ordered = "*"
	case 1:
		if args[0] == "" {
			return d.Err("ordered: the key expression must not be empty (write ordered alone to order the whole route)")
		}
		r.Ordered = args[0]
	default:
		return argCount(d, "ordered", "at most one key expression (in backticks)", len(args))
	}
	return noBlock(d, "ordered")
}

// flagOnce parses an option without arguments that sets *dst.
func flagOnce(d *caddyfile.Dispenser, dst *bool) error {
	if err := once(d, *dst); err != nil {
		return err
	}
	*dst = true
	return noArgs(d)
}
