package caddyfile

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/hookgate/hookgate/module"
	"github.com/hookgate/hookgate/module/ingest"
	"github.com/hookgate/hookgate/module/signing"
)

// Signature schemes as the Caddyfile and the JSON config name them.
const (
	schemeStandard = "standard"
	schemeEd25519  = "ed25519"
	schemeHMAC     = "hmac-sha256"
	schemeStripe   = "stripe"
	schemeSlack    = "slack"
)

// Secrets never appear in an error message: adapt errors end up in logs
// and CI output. The argument in a scheme position (`verify X`, `auth X`,
// the first argument of `sign`) is quoted only if it looks like the name
// of a scheme; anything else there might be a credential the user put
// where the scheme goes.

// algorithmLike matches words that name a signature algorithm or scheme
// (hmac-sha512, ed448, rsa-sha256, sha256, sha-1, md5, blake2b, hs256,
// standard, …) in any
// case. A first `sign` argument like this that is not a supported scheme
// is refused rather than taken for a secret: it is a typo or an
// unsupported algorithm far more likely than a secret.
var algorithmLike = regexp.MustCompile(`(?i)^(?:standard(?:-webhooks)?|hmac(?:-[a-z0-9]+)*|ed[0-9]+|(?:rsa|ecdsa)(?:-[a-z0-9]+)*|(?:sha|hs|rs|es|ps)-?[0-9]+|sha3(?:-[0-9]+)?|md[0-9]|blake2[bs]?(?:-[0-9]+)?|v1a?)$`)

// httpAuthSchemes are the HTTP authentication scheme names (IANA's
// registry and some common extras), lower-cased.
var httpAuthSchemes = map[string]bool{
	"basic": true, "bearer": true, "digest": true, "hoba": true,
	"mutual": true, "negotiate": true, "ntlm": true, "oauth": true,
	"scram-sha-1": true, "scram-sha-256": true, "vapid": true,
	"apikey": true, "api-key": true, "token": true, "header": true,
	"signature": true, "aws4-hmac-sha256": true,
}

// schemeLike reports whether s, found in a scheme position, may be quoted
// in an error message.
func schemeLike(s string) bool {
	return algorithmLike.MatchString(s) || httpAuthSchemes[strings.ToLower(s)]
}

// parseSign parses one `sign` line of a route:
//
//	sign [standard] <secret...>
//	sign ed25519 <key...>
//	sign hmac-sha256 <secret...> [{ header <name>; encoding hex|base64; prefix <p> }]
//
// Lines may repeat to append secrets (rotation), all with one scheme.
// Standard is written as the empty scheme, the JSON default.
func parseSign(d *caddyfile.Dispenser, r *module.Route) error {
	args := d.RemainingArgs()
	scheme := ""
	if len(args) > 0 {
		switch first := args[0]; {
		case first == schemeEd25519 || first == schemeHMAC:
			scheme, args = first, args[1:]
		case first == schemeStandard:
			args = args[1:]
		case algorithmLike.MatchString(first):
			return d.Errf("unknown sign scheme %q: expected sign <secret...> (Standard Webhooks), sign ed25519 <key...> or sign hmac-sha256 <secret...>", first)
		}
	}
	if len(args) == 0 {
		// The cursor is on `sign` or on the scheme, never on a secret.
		return d.ArgErr()
	}

	if r.Sign == nil {
		r.Sign = &module.SignConfig{Scheme: scheme}
	} else if r.Sign.Scheme != scheme {
		return d.Errf("sign: a route signs with one scheme; this line uses %s but an earlier one %s",
			signSchemeName(scheme), signSchemeName(r.Sign.Scheme))
	}
	if err := noOptionsInline(d, strings.TrimSpace("sign "+scheme), args); err != nil {
		return err
	}
	r.Sign.Secrets = append(r.Sign.Secrets, args...)

	var err error
	if scheme != schemeHMAC {
		err = noBlock(d, strings.TrimSpace("sign "+scheme))
	} else {
		err = parseSigBlock(d, "sign hmac-sha256", sigOptions{
			header:   &r.Sign.Header,
			encoding: &r.Sign.Encoding,
			prefix:   &r.Sign.Prefix,
		})
	}
	if err != nil {
		return err
	}
	// As for verify: secrets written out are checked with their line.
	if writtenOut(r.Sign.Secrets) {
		if _, err := signing.NewSigner(scheme, r.Sign.Secrets, r.Sign.Header, r.Sign.Encoding, r.Sign.Prefix); err != nil {
			return d.Err(err.Error())
		}
	}
	return nil
}

// signSchemeName names a SignConfig.Scheme for messages.
func signSchemeName(scheme string) string {
	if scheme == "" {
		return schemeStandard
	}
	return scheme
}

// parseVerify parses the `verify` line of webhook_ingest:
//
//	verify standard <secret...> [{ tolerance <duration> }]
//	verify hmac-sha256 <secret...> [{ header <name>; prefix <p>; encoding hex|base64 }]
//	verify stripe <secret...> [{ tolerance <duration> }]
//	verify slack <secret...> [{ tolerance <duration> }]
func parseVerify(d *caddyfile.Dispenser, in *ingest.Handler) error {
	if err := once(d, in.Verify != nil); err != nil {
		return err
	}
	if !d.NextArg() {
		return d.ArgErr()
	}
	scheme := d.Val()
	if scheme != schemeStandard && scheme != schemeHMAC && scheme != schemeStripe && scheme != schemeSlack {
		const want = "expected verify standard|hmac-sha256|stripe|slack <secret...>"
		if schemeLike(scheme) {
			return d.Errf("unknown verify scheme %q: %s", scheme, want)
		}
		return d.Errf("unknown verify scheme: %s", want)
	}
	secrets := d.RemainingArgs()
	if len(secrets) == 0 {
		return d.ArgErr() // the cursor is on the scheme
	}

	if err := noOptionsInline(d, "verify "+scheme, secrets); err != nil {
		return err
	}

	v := &ingest.VerifyConfig{Scheme: scheme, Secrets: secrets}
	opts := sigOptions{tolerance: &v.Tolerance}
	if scheme == schemeHMAC {
		opts = sigOptions{header: &v.Header, encoding: &v.Encoding, prefix: &v.Prefix}
	}
	if err := parseSigBlock(d, "verify "+scheme, opts); err != nil {
		return err
	}
	// Secrets written out are checked now, so that a bad one is reported
	// with its file and line; the message never quotes them.
	if writtenOut(secrets) {
		if _, err := signing.NewVerifier(scheme, secrets, v.Header, v.Encoding, v.Prefix, time.Duration(v.Tolerance)); err != nil {
			return d.Err(err.Error())
		}
	}
	in.Verify = v
	return nil
}

// writtenOut reports whether secrets hold no placeholder: their values
// are known while the Caddyfile is adapted.
func writtenOut(secrets []string) bool {
	return !slices.ContainsFunc(secrets, func(s string) bool { return strings.Contains(s, "{") })
}

// noOptionsInline refuses a secret that is the name of an option of the
// line's block (verify hmac-sha256 S header X-Sig): written on the line,
// the option and its value would be taken for two more secrets.
func noOptionsInline(d *caddyfile.Dispenser, what string, secrets []string) error {
	for _, s := range secrets[1:] {
		switch s {
		case "header", "encoding", "prefix", "tolerance":
			return d.Errf("%s: %q after a secret is an option, and options go in a block: %s <secret> { %s ... } (each option on its own line)", what, s, what, s)
		}
	}
	return nil
}

// sigOptions points at the fields the block of a sign or verify line
// may set; a nil field is not allowed in that block.
type sigOptions struct {
	header, encoding, prefix *string
	tolerance                *caddy.Duration
}

// parseSigBlock parses the optional block after a sign or verify line,
// called what in messages.
func parseSigBlock(d *caddyfile.Dispenser, what string, o sigOptions) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); {
		case opt == "header" && o.header != nil:
			if err = once(d, *o.header != ""); err != nil {
				return err
			}
			var name string
			if name, err = oneArg(d); err != nil {
				return err
			}
			if !signing.ValidHeaderName(name) {
				return d.Errf("invalid header name %q: expected letters, digits and %s", name, signing.TokenPunct)
			}
			*o.header = http.CanonicalHeaderKey(name)

		case opt == "encoding" && o.encoding != nil:
			if err = once(d, *o.encoding != ""); err != nil {
				return err
			}
			var enc string
			if enc, err = oneArg(d); err != nil {
				return err
			}
			if enc != "hex" && enc != "base64" {
				return d.Errf("invalid encoding %q: expected hex or base64", enc)
			}
			*o.encoding = enc

		case opt == "prefix" && o.prefix != nil:
			if err = once(d, *o.prefix != ""); err != nil {
				return err
			}
			var p string
			if p, err = oneArg(d); err != nil {
				return err
			}
			if p == "" {
				return d.Err("prefix must not be empty (omit it for none)")
			}
			*o.prefix = p

		case opt == "tolerance" && o.tolerance != nil:
			if err = once(d, *o.tolerance != 0); err != nil {
				return err
			}
			*o.tolerance, err = duration(d)

		default:
			return d.Errf("unrecognized subdirective %q in %s: expected %s", opt, what, o.names())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// names lists the subdirectives o allows, for messages.
func (o sigOptions) names() string {
	var names []string
	if o.header != nil {
		names = append(names, "header")
	}
	if o.encoding != nil {
		names = append(names, "encoding")
	}
	if o.prefix != nil {
		names = append(names, "prefix")
	}
	if o.tolerance != nil {
		names = append(names, "tolerance")
	}
	switch len(names) {
	case 0:
		return "no block"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
