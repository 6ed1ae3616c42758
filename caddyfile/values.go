package caddyfile

import (
	"math"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
)

// The helpers below read the arguments of the directive the dispenser is
// on. Each one also refuses a block after the arguments: a stray block
// would otherwise be read as subdirectives of the enclosing block and
// fail later with a confusing message.

// oneArg returns the only argument of the current directive.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	name := d.Val()
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	v := d.Val()
	if extra := d.RemainingArgs(); len(extra) > 0 {
		return "", argCount(d, name, "one argument", 1+len(extra))
	}
	return v, noBlock(d, name)
}

// someArgs returns the arguments of the current directive, of which
// there must be at least one.
func someArgs(d *caddyfile.Dispenser) ([]string, error) {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	return args, noBlock(d, name)
}

// argCount reports a wrong number of arguments without echoing them:
// Caddy's ArgErr quotes the last one, which may be a secret (a token, a
// URL with a key in it).
func argCount(d *caddyfile.Dispenser, name, want string, got int) error {
	plural := "s"
	if got == 1 {
		plural = ""
	}
	return d.Errf("%s takes %s, got %d argument%s", name, want, got, plural)
}

// noArgs checks that the current directive, a flag, has no arguments.
func noArgs(d *caddyfile.Dispenser) error {
	name := d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return noBlock(d, name)
}

// noBlock fails if a block opens after the arguments of directive name.
func noBlock(d *caddyfile.Dispenser, name string) error {
	if d.NextBlock(d.Nesting()) {
		d.Prev() // point at the brace, not at the line after it
		return d.Errf("%s does not take a block", name)
	}
	return nil
}

// once fails when a single-value option that is already set (set is true)
// is given again.
func once(d *caddyfile.Dispenser, set bool) error {
	if set {
		return d.Errf("%s specified more than once", d.Val())
	}
	return nil
}

// duration reads the only argument as a positive duration. Zero and
// negative values are refused rather than passed on, because the config
// types read zero as "use the default": `retention 0` would silently mean
// 72h.
func duration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	return parseDuration(d, name, v)
}

// parseDuration parses v, the value of option name, as a positive
// duration.
func parseDuration(d *caddyfile.Dispenser, name, v string) (caddy.Duration, error) {
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("invalid %s %q: %v", name, v, err)
	}
	if dur <= 0 {
		return 0, d.Errf("invalid %s %q: must be positive", name, v)
	}
	return caddy.Duration(dur), nil
}

// positiveInt reads the only argument as an int of at least 1, for the
// same reason duration refuses zero.
func positiveInt(d *caddyfile.Dispenser) (int, error) {
	name := d.Val()
	n, err := positiveInt64(d)
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt {
		return 0, d.Errf("invalid %s %d: too large", name, n)
	}
	return int(n), nil
}

// positiveInt64 reads the only argument as an int64 of at least 1.
func positiveInt64(d *caddyfile.Dispenser) (int64, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, d.Errf("invalid %s %q: expected a whole number", name, v)
	}
	if n < 1 {
		return 0, d.Errf("invalid %s %q: must be at least 1", name, v)
	}
	return n, nil
}

// size reads the only argument as a positive byte size with an optional
// unit (1MiB, 512KB, 1048576).
func size(d *caddyfile.Dispenser) (int64, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	if strings.HasPrefix(strings.TrimSpace(v), "-") {
		// humanize's own message would be 'strconv.ParseFloat: parsing
		// "": invalid syntax'.
		return 0, d.Errf("invalid %s %q: a size cannot be negative", name, v)
	}
	n, err := humanize.ParseBytes(v)
	if err != nil {
		return 0, d.Errf("invalid %s %q: %v (expected a size such as 512KB, 1MiB or 2GB)", name, v, err)
	}
	if n == 0 || n > math.MaxInt64 {
		return 0, d.Errf("invalid %s %q: must be between 1 byte and 8 EiB", name, v)
	}
	return int64(n), nil
}
