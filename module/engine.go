package module

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/hookgate/hookgate/persist"
	natsstore "github.com/hookgate/hookgate/persist/nats"
)

// engines holds one engine per backend (storage directory, or NATS
// servers and prefix), shared by the configs that use it, so a reload
// never reopens (or double-opens) the outbox nor reconnects to NATS.
var engines = caddy.NewUsagePool()

// shutdownGrace bounds how long in-flight attempts may run on when the
// engine stops; those still running are abandoned and stay pending (they
// spend no attempt).
const shutdownGrace = 10 * time.Second

// runtimeConfig is what one App hands the engine on Start.
type runtimeConfig struct {
	routes        map[string]*route
	order         []string // route names, sorted: matches are listed in this order
	retention     time.Duration
	deadRetention time.Duration
	dedupeWindow  time.Duration
	maxPending    int64
	keepUnmatched bool
	// minFree and maxStorage are the storage limits (0: default, none).
	minFree    int64
	maxStorage int64
	logger     *zap.Logger
	owner      *App
}

// engine is the outbox plus the dispatchers that drain it. It lives as
// long as some config uses its backend.
type Engine struct {
	dir    string // where the outbox is, for logs and errors
	store  persist.Store
	sender *sender
	// feed hands outcomes to live views (Subscribe).
	feed feed

	cfg atomic.Pointer[runtimeConfig]
	// pending counts pending deliveries over all routes (for max_pending);
	// admitting those of requests being stored.
	pending, admitting atomic.Int64

	mu          sync.RWMutex
	configs     []*runtimeConfig // started configs, newest last
	dispatchers map[string]*dispatcher
	running     bool
	stopCh      chan struct{}
	// unconfigured is closed while no started config uses the engine
	// (Caddy stops, or moved to another outbox): streams to operators
	// end then, so the admin server can stop. Made anew when one starts.
	unconfigured chan struct{}
	wg           sync.WaitGroup

	// attemptCtx is the parent of every attempt; cancelled when the
	// shutdown grace runs out.
	attemptCtx    context.Context
	cancelAttempt context.CancelFunc
	// grace is shutdownGrace; tests shorten it.
	grace time.Duration

	// states are the route states stored in the outbox when it opened;
	// each dispatcher starts from its route's and keeps it from then on.
	states map[string]persist.RouteState
	// verifyEvery is how long a route waits after a failed
	// verify_endpoint check; tests shorten it.
	verifyEvery time.Duration

	// deadMu lines the dispatchers' dead counts up with recountDead: a
	// write that changes a route's dead deliveries (a dead outcome, a
	// requeue) holds it for reading from before it is submitted until the
	// count is adjusted; recountDead holds it for writing only while its
	// snapshot is fixed, never while it counts.
	deadMu sync.RWMutex
	// deadRecountEvery is how often the dead counts are recounted from
	// the outbox, which is how expiry by dead_retention (silent in
	// Badger) reaches stats and metrics; tests shorten it.
	deadRecountEvery time.Duration

	now func() time.Time

	// spaceMu guards the state of the storage-space log lines
	// (storage.go).
	spaceMu   sync.Mutex
	spaceLog  spaceLogState
	spaceCrit spaceLogState

	// claimer is the store's Claimer when it is shared by several
	// processes (nil for Badger): each attempt then claims its delivery
	// there first (see dispatcher.claim).
	claimer persist.Claimer
	// jobs, when the store has it, loads what a scan found in one read.
	jobs persist.JobLoader
}

// backend says which outbox an engine runs on: a Badger directory, or a
// NATS JetStream cluster and prefix.
type backend struct {
	dir  string            // Badger
	nats *natsstore.Config // NATS, when set
}

// key names the backend in the engine pool: configs with the same key
// share one engine (and one connection to NATS).
func (b backend) key() string {
	if b.nats != nil {
		return b.nats.Key()
	}
	return b.dir
}

// outbox names where the backend's data is, for an operator: the
// directory, or the NATS prefix (the same streams through another list
// of servers are the same outbox).
func (b backend) outbox() string {
	if b.nats != nil {
		return "NATS prefix " + cmp.Or(b.nats.Prefix, natsstore.DefaultPrefix)
	}
	return "directory " + b.dir
}

// lastOutbox is the outbox of the config started last in this process,
// with the app that started it and the one it replaced: a config Caddy
// rolls back (another app failed to start) is undone when it stops.
var lastOutbox struct {
	sync.Mutex
	outboxRecord
}

type outboxRecord struct {
	name, prevName   string
	owner, prevOwner *App
}

// switchedOutbox records b as the outbox of the config a, starting now,
// and returns the one before it if that was another ("" if not).
func switchedOutbox(a *App, b backend) string {
	lastOutbox.Lock()
	defer lastOutbox.Unlock()
	prev, cur := lastOutbox.name, b.outbox()
	lastOutbox.outboxRecord = outboxRecord{name: cur, owner: a, prevName: prev, prevOwner: lastOutbox.owner}
	if prev == "" || prev == cur {
		return ""
	}
	return prev
}

// stoppedOutbox undoes a's switchedOutbox if a is still the config
// started last: it stops before one replaced it, so Caddy rolled it back
// (or Caddy stops), and the config before it runs on.
func stoppedOutbox(a *App) {
	lastOutbox.Lock()
	defer lastOutbox.Unlock()
	if lastOutbox.owner == a {
		lastOutbox.outboxRecord = outboxRecord{name: lastOutbox.prevName, owner: lastOutbox.prevOwner}
	}
}

func acquireEngine(b backend, logger *zap.Logger, opts persist.Options) (*Engine, error) {
	val, _, err := engines.LoadOrNew(b.key(), func() (caddy.Destructor, error) {
		if b.nats != nil {
			return openNATSEngine(*b.nats, logger, opts)
		}
		return openEngine(b.dir, logger, opts)
	})
	if err != nil {
		return nil, err
	}
	return val.(*Engine), nil
}

func releaseEngine(b backend) error {
	_, err := engines.Delete(b.key())
	return err
}

func openEngine(dir string, logger *zap.Logger, opts persist.Options) (*Engine, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating outbox directory: %v", err)
	}
	opts.Dir = dir
	opts.Logger = badgerLogger{logger.Named("badger").Sugar()}
	// One clock for the engine and its outbox.
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// The outbox reports running short of space from its committer; the
	// engine it reports to exists only once it has opened.
	var owner atomic.Pointer[Engine]
	opts.OnSpace = func(sp persist.Space) {
		if e := owner.Load(); e != nil {
			e.spaceChanged(sp)
		}
	}
	if opts.Observe == nil {
		opts.Observe = newOutboxObserver()
	}
	store, err := persist.Open(opts)
	if err != nil {
		return nil, err
	}
	e, err := newEngine(store, dir, logger, opts)
	if err != nil {
		return nil, err
	}
	owner.Store(e)
	return e, nil
}

// openNATSEngine opens the outbox on NATS JetStream.
func openNATSEngine(cfg natsstore.Config, logger *zap.Logger, opts persist.Options) (*Engine, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	store, err := natsstore.Open(cfg, opts)
	if err != nil {
		return nil, err
	}
	return newEngine(store, "nats "+strings.Join(cfg.Redacted(), " "), logger, opts)
}

// newEngine makes the engine of an open store; where names it in errors
// and logs. It closes the store if it fails.
func newEngine(store persist.Store, where string, logger *zap.Logger, opts persist.Options) (*Engine, error) {
	counts, err := store.Pending()
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("counting pending deliveries in %s: %v", where, err)
	}
	dead, err := store.DeadCounts(nil)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("counting dead deliveries in %s: %v", where, err)
	}
	states, err := store.RouteStates()
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("reading route states in %s: %v", where, err)
	}
	e := &Engine{
		dir:         where,
		store:       store,
		sender:      newSender(),
		dispatchers: make(map[string]*dispatcher),
		states:      states,
		verifyEvery: defaultVerifyEvery,
		now:         opts.Now,
		grace:       shutdownGrace,

		deadRecountEvery: defaultDeadRecountEvery,
	}
	if l, ok := store.(persist.JobLoader); ok {
		e.jobs = l
	}
	if c, ok := store.(persist.Claimer); ok {
		e.claimer = c
		e.deadRecountEvery = sharedRecountEvery
		// Deliveries written and claims let go by other nodes wake the
		// route here.
		c.Watch(e.markChanged)
		c.WatchRouteStates(e.routeStateChanged)
	}
	total := e.loadCounts(counts, dead)
	// Routes paused show in stats even when they are no longer
	// configured.
	for name, st := range states {
		if st.Paused {
			e.dispatcher(name)
		}
	}
	logger.Info("outbox opened", zap.String("storage", where), zap.Int64("pending", total))
	e.spaceAtOpen(logger)
	return e, nil
}

// dispatcher returns the named route's dispatcher, creating it (paused,
// with no route) if needed. Dispatchers live as long as the engine, so a
// route that leaves the config and comes back finds its state.
func (e *Engine) dispatcher(name string) *dispatcher {
	d, ok := e.dispatchers[name]
	if !ok {
		d = newDispatcher(e, name)
		e.dispatchers[name] = d
		if e.running {
			e.runDispatcher(d)
		}
	}
	return d
}

// dispatcherFor is dispatcher for callers that do not hold e.mu.
func (e *Engine) dispatcherFor(name string) *dispatcher {
	e.mu.RLock()
	d, ok := e.dispatchers[name]
	e.mu.RUnlock()
	if ok {
		return d
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dispatcher(name)
}

// start makes cfg the current config and runs the workers.
func (e *Engine) start(cfg *runtimeConfig) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.store == nil {
		return errors.New("webhooks engine is closed")
	}
	e.configs = append(e.configs, cfg)
	if e.unconfigured == nil || len(e.configs) == 1 {
		e.unconfigured = make(chan struct{})
	}
	if !e.running {
		e.running = true
		e.stopCh = make(chan struct{})
		e.attemptCtx, e.cancelAttempt = context.WithCancel(context.Background())
		for _, d := range e.dispatchers {
			e.runDispatcher(d)
		}
		e.wg.Add(1)
		go func(stop <-chan struct{}) {
			defer e.wg.Done()
			e.recountDeadLoop(stop)
		}(e.stopCh)
	}
	e.apply(cfg)
	return nil
}

// withdraw removes owner's config. If it was the current one, the newest
// remaining config takes over; with none left, routes pause until the
// engine is destroyed or a new config starts.
func (e *Engine) withdraw(owner *App) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, c := range e.configs {
		if c.owner == owner {
			e.configs = append(e.configs[:i], e.configs[i+1:]...)
			break
		}
	}
	if cur := e.cfg.Load(); cur != nil && cur.owner != owner {
		return
	}
	if n := len(e.configs); n > 0 {
		e.apply(e.configs[n-1])
		return
	}
	e.apply(nil)
	if e.unconfigured != nil {
		select {
		case <-e.unconfigured:
		default:
			close(e.unconfigured)
		}
	}
}

// Unconfigured returns a channel closed once no started config uses the
// engine: a stream to an operator (tail, the console's live view) ends
// then, or Caddy's admin server would wait for it when Caddy stops.
func (e *Engine) Unconfigured() <-chan struct{} {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.unconfigured == nil {
		// Not started: closed, so a stream ends at once.
		c := make(chan struct{})
		close(c)
		return c
	}
	return e.unconfigured
}

// apply swaps the current config and hands each dispatcher its route (or
// nil: removed from the config, so paused). Must hold e.mu.
func (e *Engine) apply(cfg *runtimeConfig) {
	e.cfg.Store(cfg)
	var routes map[string]*route
	if cfg != nil {
		e.store.SetRetention(cfg.dedupeWindow, cfg.retention, cfg.deadRetention)
		if sg, ok := e.store.(persist.SpaceGuard); ok {
			sg.SetSpaceLimits(cfg.minFree, cfg.maxStorage)
		}
		routes = cfg.routes
		for name := range routes {
			e.dispatcher(name)
		}
	}
	for name, d := range e.dispatchers {
		d.setRoute(routes[name])
	}
}

func (e *Engine) runDispatcher(d *dispatcher) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		d.run(e.stopCh)
	}()
}

func (e *Engine) logger() *zap.Logger {
	if c := e.cfg.Load(); c != nil {
		return c.logger
	}
	return zap.NewNop()
}

// Destruct stops the workers (in-flight attempts get shutdownGrace to
// finish; the rest stay pending) and closes the outbox. The usage pool
// calls it when the last config lets go.
func (e *Engine) Destruct() error {
	e.mu.Lock()
	running := e.running
	if running {
		close(e.stopCh)
		e.running = false
	}
	e.mu.Unlock()
	if running {
		done := make(chan struct{})
		go func() {
			e.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(e.grace):
			e.cancelAttempt()
			<-done
		}
		e.cancelAttempt()
	}
	e.mu.Lock()
	store := e.store
	e.mu.Unlock()
	return store.Close()
}

// badgerLogger sends Badger's log lines to Caddy's logger.
type badgerLogger struct{ s *zap.SugaredLogger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.s.Errorf(f, a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.s.Warnf(f, a...) }
func (l badgerLogger) Infof(f string, a ...any)    { l.s.Debugf(f, a...) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.s.Debugf(f, a...) }

var _ caddy.Destructor = (*Engine)(nil)
