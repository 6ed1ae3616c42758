package caddyfile

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/hookgate/hookgate/module"
	natsstore "github.com/hookgate/hookgate/persist/nats"
)

// parseStorage parses `storage DIR` (the Badger outbox) or `storage
// nats { ... }` (NATS JetStream) into app.
func parseStorage(d *caddyfile.Dispenser, app *module.App) error {
	args := d.RemainingArgs()
	if len(args) != 1 {
		return argCount(d, "storage", "a directory, or nats and a block", len(args))
	}
	if args[0] != "nats" {
		app.Storage = args[0]
		return noBlock(d, "storage")
	}
	cfg, block, err := parseNATS(d)
	if err != nil {
		return err
	}
	if !block {
		// A directory named nats.
		app.Storage = args[0]
		return nil
	}
	app.NATS = cfg
	return nil
}

// parseNATS parses
//
//	storage nats {
//		servers URL...
//		replicas N
//		credentials FILE | token TOKEN | user NAME PASSWORD
//		tls {
//			ca FILE
//			client_cert CERT KEY
//		}
//		prefix NAME
//	}
//
// It reports whether there was a block.
func parseNATS(d *caddyfile.Dispenser) (*natsstore.Config, bool, error) {
	cfg := &natsstore.Config{}
	block := false
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		block = true
		var err error
		switch d.Val() {
		case "servers":
			if err = once(d, len(cfg.Servers) > 0); err != nil {
				return nil, false, err
			}
			cfg.Servers, err = someArgs(d)
		case "replicas":
			if err = once(d, cfg.Replicas != 0); err != nil {
				return nil, false, err
			}
			if cfg.Replicas, err = positiveInt(d); err == nil && cfg.Replicas != 1 && cfg.Replicas != 3 && cfg.Replicas != 5 {
				return nil, false, d.Errf("replicas %d: expected 1, 3 or 5", cfg.Replicas)
			}
		case "prefix":
			if err = once(d, cfg.Prefix != ""); err != nil {
				return nil, false, err
			}
			cfg.Prefix, err = oneArg(d)
		case "credentials":
			if err = once(d, cfg.Credentials != ""); err != nil {
				return nil, false, err
			}
			cfg.Credentials, err = oneArg(d)
		case "token":
			if err = once(d, cfg.Token != ""); err != nil {
				return nil, false, err
			}
			cfg.Token, err = oneArg(d)
		case "user":
			if err = once(d, cfg.User != ""); err != nil {
				return nil, false, err
			}
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, false, d.Errf("user takes a name and a password, got %d arguments", len(args))
			}
			cfg.User, cfg.Password = args[0], args[1]
			err = noBlock(d, "user")
		case "tls":
			if err = once(d, cfg.TLS != nil); err != nil {
				return nil, false, err
			}
			cfg.TLS, err = parseNATSTLS(d)
		default:
			return nil, false, d.Errf("unrecognized nats storage subdirective %q; expected servers, replicas, prefix, credentials, token, user or tls", d.Val())
		}
		if err != nil {
			return nil, false, err
		}
	}
	if !block {
		return nil, false, nil
	}
	if err := cfg.Validate(); err != nil {
		return nil, false, d.Err(err.Error())
	}
	return cfg, true, nil
}

func parseNATSTLS(d *caddyfile.Dispenser) (*natsstore.TLSConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	t := &natsstore.TLSConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "ca":
			if err = once(d, t.CA != ""); err != nil {
				return nil, err
			}
			t.CA, err = oneArg(d)
		case "client_cert":
			if err = once(d, t.ClientCert != ""); err != nil {
				return nil, err
			}
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Errf("client_cert takes a certificate file and a key file, got %d arguments", len(args))
			}
			t.ClientCert, t.ClientKey = args[0], args[1]
			err = noBlock(d, "client_cert")
		default:
			return nil, d.Errf("unrecognized nats tls subdirective %q; expected ca or client_cert", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}
