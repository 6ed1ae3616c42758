// Package hookgate is the root of the hookgate Caddy plugin. It only
// blank-imports the packages that register the Caddy modules and the
// Caddyfile syntax, so that
//
//	xcaddy build --with github.com/hookgate/hookgate
//
// produces a Caddy with everything hookgate offers.
package hookgate

import (
	_ "github.com/hookgate/hookgate/caddyfile"
	_ "github.com/hookgate/hookgate/module"
	_ "github.com/hookgate/hookgate/module/console"
	_ "github.com/hookgate/hookgate/module/ingest"
)
