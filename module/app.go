package module

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/hookgate/hookgate/module/egress"
	"github.com/hookgate/hookgate/persist"
	natsstore "github.com/hookgate/hookgate/persist/nats"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `webhooks` Caddy app: the outbox, the routes and the workers
// that deliver events to them.
//
// The outbox (a Badger database, or NATS JetStream) and its workers form
// one engine per storage directory (or NATS servers and prefix) that
// outlives config reloads: each App borrows it in
// Provision, pushes its routes into it in Start and withdraws them in Stop.
type App struct {
	// Storage is the outbox directory. Default: Caddy's data directory
	// + /webhooks. Only one process may use a directory at a time.
	Storage string `json:"storage,omitempty"`

	// NATS puts the outbox on a NATS JetStream cluster instead of a
	// directory (storage must then be empty): every Caddy node with the
	// same servers and prefix is one gateway. Placeholders (such as
	// {env.NATS_TOKEN}) are replaced in the token, password and file
	// names.
	NATS *natsstore.Config `json:"nats,omitempty"`

	// Retention is how long delivered events, deliveries and their
	// attempt logs are kept for look-up. Default: 72h.
	Retention caddy.Duration `json:"retention,omitempty"`

	// DeadRetention is how long dead deliveries are kept (listed and
	// replayable). Default: 720h (30 days).
	DeadRetention caddy.Duration `json:"dead_retention,omitempty"`

	// DedupeWindow is how long an event id or Idempotency-Key is
	// remembered; a repeat within it is answered 200 with "duplicate":
	// true and stores nothing. An id whose event is still stored (a
	// delivery pending, or retained) stays a duplicate after the window:
	// a stored event is never replaced. Default: 24h.
	DedupeWindow caddy.Duration `json:"dedupe_window,omitempty"`

	// MaxPending caps the pending deliveries across all routes; ingest
	// answers 503 with Retry-After above it. Default: 10,000,000.
	MaxPending int64 `json:"max_pending,omitempty"`

	// GCInterval is how often the Badger outbox runs value-log garbage
	// collection, which gives back the disk space of expired and
	// superseded records (a run rewrites the live part of a mostly-dead
	// value-log file). It applies when the outbox opens, not on a reload.
	// Default: 5m.
	GCInterval caddy.Duration `json:"gc_interval,omitempty"`

	// MinFree is the free space, in bytes, the outbox keeps on its file
	// system. Below it ingest answers 503 storage_full with Retry-After
	// (nothing of the request is stored) and resumes by itself once space
	// returns; below half of it (the hard reserve) deliveries are held
	// too, since their outcomes could not be recorded, and the outbox
	// will not open. The outbox's database writes through memory maps,
	// and running its disk dry would crash Caddy, so this is the room it
	// needs for its own work with no ingest at all: flushes, compactions,
	// value-log GC. Default: 256 MiB. Lower it only on a small disk you
	// have tested; what the outbox writes on its own may then not fit.
	MinFree int64 `json:"min_free,omitempty"`

	// MaxStorage caps the space the outbox directory takes, in bytes:
	// above it ingest answers 503 storage_full as with MinFree, while
	// deliveries and their outcomes go on. Default: no cap.
	MaxStorage int64 `json:"max_storage,omitempty"`

	// KeepUnmatched stores events that match no route (for look-up);
	// by default they are acknowledged and counted only.
	KeepUnmatched bool `json:"keep_unmatched,omitempty"`

	// Routes by name. A name is 1–64 characters of A-Z a-z 0-9 _ - .
	Routes map[string]*Route `json:"routes,omitempty"`

	// Egress holds named egress policies (source address, allowed
	// destinations, proxy, TLS, redirects; see egress.Policy). A route
	// picks one by name; the one named "default" applies to routes that
	// name none, and without it they get the built-in default policy,
	// which refuses private, loopback, link-local and metadata addresses.
	// A name is 1–64 characters of A-Z a-z 0-9 _ - .
	Egress map[string]*egress.Policy `json:"egress,omitempty"`

	ctx     caddy.Context
	logger  *zap.Logger
	storage backend
	// engine is set in Start: handlers of this config read it per request.
	engine *atomic.Pointer[Engine]
	// started is closed once engine is set. Caddy starts apps in no
	// particular order, so the HTTP server may take requests before this
	// app has started; handlers wait for it briefly instead of failing.
	startedCh chan struct{}
	routes    map[string]*route
	// routeOrder is the route names sorted, so answers list them stably.
	routeOrder []string
	started    bool
	tracing    bool // holds a reference on the tracer provider
	// egressKeys are the egress clients this App acquired, released in
	// Cleanup.
	egressKeys []string
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "webhooks",
		New: func() caddy.Module { return new(App) },
	}
}

// Defaults the App fills in; exported through the README.
const (
	defaultRetention     = 72 * time.Hour
	defaultDeadRetention = 30 * 24 * time.Hour
	defaultDedupeWindow  = 24 * time.Hour
	defaultMaxPending    = 10_000_000
	defaultMinFree       = persist.DefaultMinFree
)

// Provision compiles the routes and borrows the engine for the storage
// directory. It starts nothing: `caddy validate` provisions too.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	appsByConfig.Store(ctx.Done(), a)
	a.logger = ctx.Logger()
	setProfileRates(a.logger)
	a.engine = new(atomic.Pointer[Engine])
	a.startedCh = make(chan struct{})
	// Collectors are made once per process and registered with each
	// config's registry, so counters survive reloads.
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}

	if a.Retention <= 0 {
		a.Retention = caddy.Duration(defaultRetention)
	}
	if a.DeadRetention <= 0 {
		a.DeadRetention = caddy.Duration(defaultDeadRetention)
	}
	if a.DedupeWindow <= 0 {
		a.DedupeWindow = caddy.Duration(defaultDedupeWindow)
	}
	if a.MaxPending <= 0 {
		a.MaxPending = defaultMaxPending
	}
	if a.GCInterval < 0 {
		return fmt.Errorf("gc_interval %s: expected a positive duration", time.Duration(a.GCInterval))
	}
	if a.MinFree < 0 || a.MaxStorage < 0 {
		return fmt.Errorf("min_free %d and max_storage %d: expected sizes in bytes, 0 or more", a.MinFree, a.MaxStorage)
	}
	if a.MinFree == 0 {
		a.MinFree = defaultMinFree
	}

	a.routes = make(map[string]*route, len(a.Routes))
	for name, rc := range a.Routes {
		r, err := compileRoute(name, rc)
		if err != nil {
			return err
		}
		a.routes[name] = r
		a.routeOrder = append(a.routeOrder, name)
	}
	slices.Sort(a.routeOrder)
	if err := a.provisionEgress(); err != nil {
		return err
	}

	if a.NATS != nil {
		if a.Storage != "" {
			return fmt.Errorf("storage %q and nats are both set; expected one outbox", a.Storage)
		}
		cfg, err := provisionNATS(*a.NATS)
		if err != nil {
			return err
		}
		a.storage = backend{nats: &cfg}
		return nil
	}
	dir := a.Storage
	if dir == "" {
		dir = filepath.Join(caddy.AppDataDir(), "webhooks")
	} else {
		dir = caddy.NewReplacer().ReplaceKnown(dir, "")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("storage %q: %v", dir, err)
	}
	a.storage = backend{dir: filepath.Clean(abs)}
	return nil
}

// Start borrows the engine for the storage directory (opening the outbox
// if no other config has it open), hands it this config's routes and
// starts the workers if they are not running yet.
//
// The outbox is opened here rather than in Provision so that `caddy
// validate` (which provisions) neither opens nor locks it, and can check
// a config while Caddy runs.
func (a *App) Start() error {
	// One tracer provider per process, counted per config: a reload
	// reuses it (no second batch processor), the last Cleanup shuts it.
	if err := acquireTracing(a.logger); err != nil {
		return fmt.Errorf("tracing: %v", err)
	}
	a.tracing = true
	eng, err := acquireEngine(a.storage, a.logger, persist.Options{
		DedupeWindow:  time.Duration(a.DedupeWindow),
		Retention:     time.Duration(a.Retention),
		DeadRetention: time.Duration(a.DeadRetention),
		MinFree:       a.MinFree,
		MaxStorage:    a.MaxStorage,
		GCInterval:    time.Duration(a.GCInterval),
	})
	if err != nil {
		return err
	}
	err = eng.start(&runtimeConfig{
		routes:        a.routes,
		order:         a.routeOrder,
		retention:     time.Duration(a.Retention),
		deadRetention: time.Duration(a.DeadRetention),
		dedupeWindow:  time.Duration(a.DedupeWindow),
		maxPending:    a.MaxPending,
		keepUnmatched: a.KeepUnmatched,
		minFree:       a.MinFree,
		maxStorage:    a.MaxStorage,
		logger:        a.logger,
		owner:         a,
	})
	if err != nil {
		releaseEngine(a.storage)
		return err
	}
	a.engine.Store(eng)
	close(a.startedCh)
	a.started = true
	if prev := switchedOutbox(a, a.storage); prev != "" {
		// Deliberate or a typo, it changes what is sent: say so once.
		a.logger.Warn("this config uses another outbox than the config before it: deliveries still pending in the old one "+
			"are not sent until a config names it again, and ids and idempotency keys are remembered per outbox",
			zap.String("old", prev), zap.String("new", a.storage.outbox()))
	}
	return nil
}

// startWait bounds how long a request waits for the app to start.
const startWait = 5 * time.Second

// Engine returns the gateway's engine once the app has started, waiting
// up to a few seconds (or until ctx ends) while Caddy is still starting
// apps; nil if it has not started by then. Handlers of the same config
// (ingest, console) and the admin API reach the gateway only through it.
func (a *App) Engine(ctx context.Context) *Engine {
	if eng := a.engine.Load(); eng != nil {
		return eng
	}
	t := time.NewTimer(startWait)
	defer t.Stop()
	select {
	case <-a.startedCh:
	case <-t.C:
	case <-ctx.Done():
	}
	return a.engine.Load()
}

// Stop withdraws this config from the engine. The engine keeps running
// while another config (the one a reload brings) uses it; it stops for
// good in Cleanup, when the last user lets go.
func (a *App) Stop() error {
	if a.started {
		a.engine.Load().withdraw(a)
		a.started = false
		stoppedOutbox(a)
	}
	return nil
}

// Cleanup releases the engine this App acquired, if any.
func (a *App) Cleanup() error {
	appsByConfig.CompareAndDelete(a.ctx.Done(), a)
	egress.Release(a.egressKeys)
	a.egressKeys = nil
	var err error
	if a.engine != nil && a.engine.Load() != nil {
		// In-flight attempts finish here, spans and all: tracing goes last.
		err = releaseEngine(a.storage)
	}
	if a.tracing {
		a.tracing = false
		err = errors.Join(err, releaseTracing())
	}
	return err
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
