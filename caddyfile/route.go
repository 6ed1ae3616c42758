package caddyfile

import (
	"mime"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/hookgate/hookgate/module"
)

// nonEmptyOnce reads the only argument of a single-value option into
// *dst, refusing an empty value (which would read as unset, and let the
// option be given twice) and a second occurrence. when and transform
// take CEL expressions, written in backticks so that their quotes
// survive: when `event.data.priority == "High"`. They are compiled when
// the config is provisioned, not here.
func nonEmptyOnce(d *caddyfile.Dispenser, dst *string) error {
	if err := once(d, *dst != ""); err != nil {
		return err
	}
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return err
	}
	if strings.TrimSpace(v) == "" {
		return d.Errf("%s must not be empty", name)
	}
	*dst = v
	return nil
}

// parseContentType parses `content_type <media type>`, checked here so
// that a bad value fails with its line rather than at delivery.
func parseContentType(d *caddyfile.Dispenser, r *module.Route) error {
	if err := nonEmptyOnce(d, &r.ContentType); err != nil {
		return err
	}
	if _, _, err := mime.ParseMediaType(r.ContentType); err != nil {
		return d.Errf("invalid content_type %q: %v", r.ContentType, err)
	}
	return nil
}

// parseTracePropagation parses `trace_propagation on|off`.
func parseTracePropagation(d *caddyfile.Dispenser, r *module.Route) error {
	if err := nonEmptyOnce(d, &r.TracePropagation); err != nil {
		return err
	}
	if r.TracePropagation != "on" && r.TracePropagation != "off" {
		return d.Errf("trace_propagation takes on or off, got %q", r.TracePropagation)
	}
	return nil
}
