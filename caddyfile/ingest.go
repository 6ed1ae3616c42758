package caddyfile

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/hookgate/hookgate/module/ingest"
	"github.com/hookgate/hookgate/module/signing"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("webhook_ingest", parseIngest)
	// Ingest answers the request itself, so it must run before the
	// handlers that would otherwise answer it; with this users need no
	// `order` line.
	httpcaddyfile.RegisterDirectiveOrder("webhook_ingest", httpcaddyfile.Before, "reverse_proxy")
}

// parseIngest sets up the `webhook_ingest` handler directive (syntax in
// the package doc). The optional matcher has already been taken off the
// tokens by RegisterHandlerDirective.
func parseIngest(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	in := new(ingest.Handler)
	if err := unmarshalIngest(h.Dispenser, in); err != nil {
		return nil, err
	}
	return in, nil
}

// unmarshalIngest fills in from a `webhook_ingest` directive. It is a
// function here rather than an UnmarshalCaddyfile method on
// ingest.Handler so that the handler knows nothing of the Caddyfile.
func unmarshalIngest(d *caddyfile.Dispenser, in *ingest.Handler) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	// id_header, id_field and keep_headers need topic, which may come
	// after them:
	// judged at the end, reported at the first one's line.
	var inboundOnly error
	var idHeaderAt string // file:line of id_header, for an error found at the end
	for d.NextBlock(0) {
		var err error
		sub := d.Val()
		switch sub {
		case "max_body":
			if err = once(d, in.MaxBody != 0); err != nil {
				return err
			}
			in.MaxBody, err = size(d)

		case "max_batch":
			if err = once(d, in.MaxBatch != 0); err != nil {
				return err
			}
			in.MaxBatch, err = positiveInt(d)

		case "auth":
			err = parseIngestAuth(d, in)

		case "topic":
			if err = nonEmptyOnce(d, &in.Topic); err == nil {
				if cerr := ingest.CheckTopic(in.Topic); cerr != nil {
					return d.Err(cerr.Error())
				}
			}

		case "source":
			err = nonEmptyOnce(d, &in.Source)

		case "verify":
			err = parseVerify(d, in)

		case "id_header":
			if err = once(d, in.IDHeader != ""); err != nil {
				return err
			}
			if in.IDHeader, err = oneArg(d); err != nil {
				return err
			}
			if !signing.ValidHeaderName(in.IDHeader) {
				return d.Errf("invalid header name %q: expected letters, digits and %s", in.IDHeader, signing.TokenPunct)
			}
			in.IDHeader = http.CanonicalHeaderKey(in.IDHeader)
			idHeaderAt = fmt.Sprintf("%s:%d", d.File(), d.Line())

		case "id_field":
			if err = once(d, in.IDField != ""); err != nil {
				return err
			}
			if in.IDField, err = oneArg(d); err != nil {
				return err
			}
			if cerr := ingest.CheckIDField(in.IDField); cerr != nil {
				return d.Err(cerr.Error())
			}

		case "keep_headers":
			if err = once(d, in.KeepHeaders != nil); err != nil {
				return err
			}
			var names []string
			if names, err = someArgs(d); err != nil {
				return err
			}
			for _, name := range names {
				if !signing.ValidHeaderName(name) {
					return d.Errf("invalid header name %q: expected letters, digits and %s", name, signing.TokenPunct)
				}
				in.KeepHeaders = append(in.KeepHeaders, http.CanonicalHeaderKey(name))
			}

		default:
			return d.Errf("unrecognized subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
		if inboundOnly == nil && (sub == "id_header" || sub == "id_field" || sub == "keep_headers") {
			inboundOnly = d.Errf("%s applies to inbound endpoints only: add topic, or remove it", sub)
		}
	}
	if in.Topic == "" && inboundOnly != nil {
		return inboundOnly
	}
	if err := in.CheckIDHeader(); err != nil {
		// Found once auth and verify are known: reported at its line.
		return fmt.Errorf("%v, at %s", err, idHeaderAt)
	}
	return nil
}

// parseIngestAuth parses `auth bearer <token...>` and
// `auth header <name> <value...>`. Repeated bearer lines append, so that
// a token can be rotated by listing old and new; there is one auth
// header (list its values on one line).
func parseIngestAuth(d *caddyfile.Dispenser, in *ingest.Handler) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	if in.Auth == nil {
		in.Auth = new(ingest.Auth)
	}
	switch scheme := d.Val(); scheme {
	case "bearer":
		tokens, err := someArgs(d)
		if err != nil {
			return err
		}
		in.Auth.Bearer = append(in.Auth.Bearer, tokens...)
		return nil

	case "header":
		if in.Auth.Header != nil {
			return d.Err("auth header specified more than once (list its values on one line)")
		}
		args := d.RemainingArgs()
		if len(args) < 2 {
			return argCount(d, "auth header", "a header name and at least one value", len(args))
		}
		if err := noBlock(d, "auth header"); err != nil {
			return err
		}
		if !signing.ValidHeaderName(args[0]) {
			return d.Errf("invalid header name %q: expected letters, digits and %s", args[0], signing.TokenPunct)
		}
		in.Auth.Header = &ingest.AuthHeader{
			Name:   http.CanonicalHeaderKey(args[0]),
			Values: args[1:],
		}
		return nil

	default:
		// The word may be a token written without its scheme.
		if schemeLike(scheme) {
			return d.Errf("unsupported auth scheme %q: expected bearer or header", scheme)
		}
		return d.Err("unsupported auth scheme: expected auth bearer <token...> or auth header <name> <value...>")
	}
}

// Interface guards
var _ httpcaddyfile.UnmarshalHandlerFunc = parseIngest
