package module

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Ingest{})
}

// Ingest is the `webhook_ingest` HTTP handler: applications POST events
// to it, and it answers 202 only once each event and its deliveries are
// on disk.
type Ingest struct {
	// MaxBody is the largest request body accepted, in bytes; larger ones
	// get 413. Default: 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// MaxBatch is the most events one array may hold; more get 413.
	// Default: 1000.
	MaxBatch int `json:"max_batch,omitempty"`

	// Auth, when set, requires a credential on every request (401
	// without one).
	Auth *IngestAuth `json:"auth,omitempty"`

	app    *App
	logger *zap.Logger
	tokens [][]byte
}

// CaddyModule returns the Caddy module information.
func (Ingest) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.webhook_ingest",
		New: func() caddy.Module { return new(Ingest) },
	}
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*Ingest)(nil)
	_ caddy.Provisioner           = (*Ingest)(nil)
)
