package module

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/hookgate/hookgate/persist"
	natsstore "github.com/hookgate/hookgate/persist/nats"
)

// On a store shared by several processes (persist.Claimer), a delivery
// listed as due here may be attempted by another node at the same time:
// each attempt first claims its delivery in the store, for claimLease
// past the route's timeout, and lets it go if another node holds it or
// it changed since it was listed. Record releases the claim; attempts
// that end without a record release it here.

// claimMargin is what a claim's lease adds to the route's timeout: time
// to record the outcome after the endpoint answered (a few writes, each
// bounded by the store's own timeout). A delivery in flight on a node
// that died is attempted again that long after its attempt began.
const claimMargin = 15 * time.Second

// claimRetryPause slows a dispatcher down when the store cannot be
// reached to claim: the attempt's slot is held that long.
const claimRetryPause = time.Second

// sharedRecountEvery is how often an engine on a shared store recounts
// pending and dead deliveries from the store, where other nodes change
// them.
const sharedRecountEvery = 5 * time.Second

// claim takes j's delivery for this process; true without a Claimer.
func (d *dispatcher) claim(r *route, j *job) bool {
	c := d.e.claimer
	if c == nil {
		return true
	}
	ok, err := c.Claim(j.d.ID, j.d.Due, r.timeout+claimMargin)
	if err != nil {
		d.e.logger().Warn("claiming a delivery", zap.String("route", d.name),
			zap.String("delivery", j.d.ID), zap.Error(err))
		time.Sleep(claimRetryPause)
		return false
	}
	return ok
}

// unclaim lets a claimed delivery go without an outcome.
func (d *dispatcher) unclaim(id string) {
	if c := d.e.claimer; c != nil {
		c.Release(id)
	}
}

// markChanged wakes route's dispatcher to read the store again: another
// node wrote one of its deliveries or let one go.
func (e *Engine) markChanged(route string) {
	e.mu.RLock()
	d, ok := e.dispatchers[route]
	e.mu.RUnlock()
	if !ok {
		return
	}
	d.mu.Lock()
	d.markDisk()
	d.scanFrom = time.Time{}
	d.mu.Unlock()
	d.signal()
}

// routeStateChanged takes a route state written by any node of a
// shared store: whether the route is paused (and why) and which
// endpoint is verified hold for the whole gateway. The circuit stays
// this node's own: each node judges the endpoint by its own attempts.
func (e *Engine) routeStateChanged(route string, st persist.RouteState) {
	d := e.dispatcherFor(route)
	d.stMu.Lock()
	changed := d.state.Paused != st.Paused || d.state.PausedReason != st.PausedReason || d.state.VerifiedURL != st.VerifiedURL
	d.state.Paused, d.state.PausedReason, d.state.VerifiedURL = st.Paused, st.PausedReason, st.VerifiedURL
	d.stMu.Unlock()
	if changed {
		d.signal()
	}
}

// loaded is what load returned for one delivery.
type loaded struct {
	j   *job
	err error
}

// sharedLoaders is how many deliveries loadAll reads at once from a
// shared store, where each read of an event is a round trip to the
// server.
const sharedLoaders = 16

// loadAll loads the deliveries refs name, with their events: one after
// the other from a local store, several at once from a shared one.
func (e *Engine) loadAll(refs []persist.Ref) []loaded {
	out := make([]loaded, len(refs))
	if e.jobs != nil {
		ids := make([]string, len(refs))
		for i, ref := range refs {
			ids[i] = ref.ID
		}
		jobs, err := e.jobs.LoadJobs(ids)
		for i := range out {
			out[i].err = err
			if err == nil {
				out[i].j, out[i].err = loadedJob(ids[i], jobs[i])
			}
		}
		return out
	}
	if e.claimer == nil || len(refs) < 2 {
		for i, ref := range refs {
			out[i].j, out[i].err = e.load(ref.ID)
		}
		return out
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(sharedLoaders, len(refs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i].j, out[i].err = e.load(refs[i].ID)
			}
		}()
	}
	for i := range refs {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// recountPending sets the pending counts to what the shared store
// holds: other nodes ingest and finish deliveries too.
func (e *Engine) recountPending() error {
	counts, err := e.store.Pending()
	if err != nil {
		return err
	}
	var total int64
	e.mu.Lock()
	for name, d := range e.dispatchers {
		n := int64(counts[name])
		d.pending.Store(n)
		total += n
	}
	for name, n := range counts {
		if _, ok := e.dispatchers[name]; !ok {
			e.dispatcher(name).pending.Store(int64(n))
			total += int64(n)
		}
	}
	e.mu.Unlock()
	e.pending.Store(total)
	return nil
}

// provisionNATS replaces placeholders in a NATS storage config and
// checks it.
func provisionNATS(cfg natsstore.Config) (natsstore.Config, error) {
	repl := caddy.NewReplacer()
	// A credential that was given but comes out empty (an unset
	// {env.NATS_TOKEN}) is a config error here, not an "Authorization
	// Violation" from the servers; a file that is not there neither.
	expand := func(what string, f *string, file bool) error {
		if *f == "" {
			return nil
		}
		if *f = repl.ReplaceKnown(*f, ""); *f == "" {
			return fmt.Errorf("nats storage: %s is empty once its placeholders are filled in (an unset environment variable?)", what)
		}
		if file {
			if _, err := os.Stat(*f); err != nil {
				return fmt.Errorf("nats storage: %s: %v", what, err)
			}
		}
		return nil
	}
	type field struct {
		what string
		p    *string
		file bool
	}
	fields := []field{{"credentials", &cfg.Credentials, true}, {"token", &cfg.Token, false},
		{"user", &cfg.User, false}, {"password", &cfg.Password, false}}
	if cfg.TLS != nil {
		t := *cfg.TLS // the caller's stays as it is
		cfg.TLS = &t
		fields = append(fields, field{"tls ca", &t.CA, true}, field{"tls client_cert", &t.ClientCert, true},
			field{"tls client_cert key", &t.ClientKey, true})
	}
	for _, f := range fields {
		if err := expand(f.what, f.p, f.file); err != nil {
			return cfg, err
		}
	}
	cfg.Servers = slices.Clone(cfg.Servers)
	for i, s := range cfg.Servers {
		cfg.Servers[i] = repl.ReplaceKnown(s, "")
	}
	return cfg, cfg.Validate()
}
