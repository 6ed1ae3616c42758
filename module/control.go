package module

import (
	"cmp"
	"errors"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hookgate/hookgate/persist"
)

// This file is the engine's control surface for operators: what the admin
// API, the CLI and the console call. The dispatcher side implements the
// behaviour; look-ups are in lookup.go.

// Errors of the control surface.
var (
	// ErrUnknownRoute is returned for a route the engine has never seen
	// (not in any config and nothing stored for it).
	ErrUnknownRoute = errors.New("unknown route")
	// ErrCannotRequeue is returned by Retry for a delivery whose event
	// expired by retention: there is nothing left to send.
	ErrCannotRequeue = errors.New("delivery cannot be requeued: it or its event expired by retention")
)

// RouteStats is one route's state, as `GET /webhooks/stats` shows it.
type RouteStats struct {
	Route string `json:"route"`
	// Description is the route's description from the config.
	Description string `json:"description,omitempty"`
	// State is "active", "paused" (by an operator, or after a 410),
	// "disabled" (by config), "unverified" (verify_endpoint pending) or
	// "removed" (not in the current config; its deliveries wait).
	State     string `json:"state"`
	Pending   int64  `json:"pending"`
	InFlight  int    `json:"in_flight"`
	Delivered int64  `json:"delivered"` // since the process started
	Dead      int64  `json:"dead"`
	Circuit   string `json:"circuit"` // "closed", "open" or "half_open"
	// Reason says why a route is not active: who or what paused it
	// ("paused by an operator", "endpoint answered 410 Gone (delivery
	// …)"), why its endpoint is not verified yet, that the config
	// disables or no longer has it.
	Reason      string    `json:"reason,omitempty"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastFailure time.Time `json:"last_failure,omitzero"`
}

// rescan makes the dispatcher read the ready index from the top on its
// next turn: deliveries were put back (retry, replay) at due times it may
// have passed.
func (d *dispatcher) rescan() {
	d.mu.Lock()
	d.markDisk()
	d.scanFrom = time.Time{}
	d.mu.Unlock()
	d.signal()
}

// rescan tells the named route's dispatcher to rescan.
func (e *Engine) rescan(route string) {
	e.dispatcherFor(route).rescan()
}

// SetPaused pauses or resumes the named route: a paused route keeps
// matching and queueing events, and sends nothing until resumed. The
// state is kept in the outbox, so it holds across restarts and reloads.
// Resuming also ends an open circuit's cool-down: an operator who fixed
// the endpoint need not wait up to its last cool-down for the probe. It
// fails with ErrUnknownRoute for a route the engine has no dispatcher
// for (never configured, nothing stored).
func (e *Engine) SetPaused(route string, paused bool) error {
	e.mu.RLock()
	d, ok := e.dispatchers[route]
	e.mu.RUnlock()
	if !ok {
		return ErrUnknownRoute
	}
	reason := ""
	if paused {
		reason = "paused by an operator"
	}
	changed, err := d.setPaused(paused, reason)
	if err != nil {
		return err
	}
	switch {
	case changed && paused:
		e.logger().Info("route paused", zap.String("route", route))
	case changed:
		e.logger().Info("route resumed", zap.String("route", route))
	}
	if !paused {
		d.mu.Lock()
		probe := d.br.probeNow(e.now())
		d.mu.Unlock()
		if probe {
			e.logger().Info("circuit cool-down ended by an operator: the next pending delivery goes as the probe",
				zap.String("route", route))
			d.signal()
		}
	}
	return nil
}

// setPaused changes the route's paused state; a route already paused
// keeps the reason it was paused for. It reports whether anything changed.
func (d *dispatcher) setPaused(paused bool, reason string) (bool, error) {
	changed, err := d.updateState(func(st *persist.RouteState) {
		switch {
		case !paused:
			st.Paused, st.PausedReason = false, ""
		case !st.Paused:
			st.Paused, st.PausedReason = true, reason
		}
	})
	if changed && !paused {
		// Resume: read the ready index from the top (hold let the queue go).
		d.rescan()
	}
	return changed, err
}

// pauseGone pauses the route after its endpoint answered 410 Gone to
// deliveryID: it said it wants nothing more, so the route waits for an
// operator to resume it rather than spend every delivery's attempts.
func (d *dispatcher) pauseGone(log *zap.Logger, deliveryID string) {
	reason := "endpoint answered 410 Gone (delivery " + deliveryID + ")"
	changed, err := d.setPaused(true, reason)
	switch {
	case err != nil:
		log.Error("pausing the route after 410 Gone", zap.String("route", d.name), zap.Error(err))
	case changed:
		log.Warn("route paused: the endpoint answered 410 Gone; deliveries wait until it is resumed",
			zap.String("route", d.name), zap.String("delivery", deliveryID))
	}
}

// routeState returns the route's stored state.
func (d *dispatcher) routeState() persist.RouteState {
	d.stMu.Lock()
	defer d.stMu.Unlock()
	return d.state
}

// updateState applies fn to the route's state and writes it to the
// outbox (synced) before it takes effect. It reports whether fn changed
// anything.
func (d *dispatcher) updateState(fn func(*persist.RouteState)) (bool, error) {
	d.stMu.Lock()
	defer d.stMu.Unlock()
	st := d.state
	fn(&st)
	if st == d.state {
		return false, nil
	}
	if err := d.e.store.SetRouteState(d.name, st); err != nil {
		return false, err
	}
	d.state = st
	d.signal()
	return true, nil
}

// Stats returns every route's state and counters, sorted by name: the
// routes of the current config and those the outbox still holds
// deliveries or state for. It reads counters kept in memory, never the
// outbox.
func (e *Engine) Stats() []RouteStats {
	e.mu.RLock()
	ds := make([]*dispatcher, 0, len(e.dispatchers))
	for _, d := range e.dispatchers {
		ds = append(ds, d)
	}
	e.mu.RUnlock()
	now := e.now()
	out := make([]RouteStats, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.stats(now))
	}
	slices.SortFunc(out, func(a, b RouteStats) int { return strings.Compare(a.Route, b.Route) })
	return out
}

func (d *dispatcher) stats(now time.Time) RouteStats {
	st := RouteStats{
		Route:     d.name,
		State:     stateActive,
		Pending:   max(d.pending.Load(), 0),
		Delivered: d.delivered.Load(),
		Dead:      max(d.dead.Load(), 0),
	}
	r := d.route.Load()
	if r != nil {
		st.Description = r.description
	}
	if g := d.gate(r); g != "" {
		st.State = g
	}
	d.mu.Lock()
	st.InFlight = d.inflight
	st.Circuit = d.br.stateAt(now)
	probeAt := d.br.retryAt
	verifyErr := d.verifyErr
	d.mu.Unlock()
	switch st.State {
	case statePaused:
		d.stMu.Lock()
		st.Reason = d.state.PausedReason
		d.stMu.Unlock()
	case stateUnverified:
		st.Reason = cmp.Or(verifyErr, "endpoint verification has not passed yet")
	case stateDisabled:
		st.Reason = "disabled in the config"
	case stateRemoved:
		st.Reason = "not in the current config: its deliveries wait for a route of this name"
	case stateActive:
		if d.e.outcomesRefused() {
			// Active, and yet nothing goes: the gateway, not the endpoint.
			st.Reason = "deliveries held: the outbox is below its hard reserve of free space (half of min_free, or more with large tables)"
		}
	}
	if r != nil && !r.breaker.on() {
		// A circuit restored open for a route whose breaker is now off
		// closes at the dispatcher's next turn.
		st.Circuit = circuitClosed
	}
	if st.State == stateActive && st.Reason == "" && st.Circuit == circuitOpen {
		// Active, and yet nothing goes until the probe: say when, or
		// deliveries due in the past look stuck.
		st.Reason = "circuit open after repeated failures: nothing is sent until a probe at " +
			probeAt.UTC().Format(time.RFC3339) + " (a retry or replay waits for it too)"
	}
	if ns := d.lastSuccess.Load(); ns != 0 {
		st.LastSuccess = time.Unix(0, ns).UTC()
	}
	if ns := d.lastFailure.Load(); ns != 0 {
		st.LastFailure = time.Unix(0, ns).UTC()
	}
	return st
}

// KnownRoute reports whether the engine knows a route of that name: in
// the config, or with deliveries or state in the outbox.
func (e *Engine) KnownRoute(name string) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	_, ok := e.dispatchers[name]
	return ok
}

// Now is the engine's clock: what it stamps records with and compares
// due times to.
func (e *Engine) Now() time.Time { return e.now() }

// Retry makes one delivery pending and due now, whatever its state; a
// dead or delivered one keeps its attempt history. It fails with
// persist.ErrNotFound for an unknown id and ErrCannotRequeue when its
// event is gone.
func (e *Engine) Retry(id string) (persist.Requeued, error) {
	if _, err := e.store.Delivery(id); err != nil {
		return persist.Requeued{}, err
	}
	res, err := e.requeue([]string{id})
	if err != nil {
		return persist.Requeued{}, err
	}
	if len(res) == 0 {
		return persist.Requeued{}, ErrCannotRequeue
	}
	return res[0], nil
}

// replayBatch is how many deliveries a replay selects and requeues at a
// time; the dispatcher starts on each batch as it lands.
const replayBatch = 10_000

// Replay makes a route's deliveries of status st (dead or delivered)
// that became final in [since, until) pending again, up to limit (< 1:
// all), oldest first. Deliveries that become final while it runs are not
// picked up again. It returns how many it requeued, and ErrUnknownRoute
// when it found none for a route the engine has never seen.
func (e *Engine) Replay(route string, st persist.Status, since, until time.Time, limit int) (int, error) {
	if now := e.now(); until.IsZero() || until.After(now) {
		until = now
	}
	replayed, cursor := 0, ""
	for limit < 1 || replayed < limit {
		batch := replayBatch
		if limit > 0 {
			batch = min(batch, limit-replayed)
		}
		ids, next, err := e.store.ReplayIDs(route, st, since, until, cursor, batch)
		if err != nil {
			return replayed, err
		}
		if len(ids) > 0 {
			res, err := e.requeue(ids)
			replayed += len(res)
			if err != nil {
				return replayed, err
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if replayed == 0 && !e.knowsRoute(route) {
		return 0, ErrUnknownRoute
	}
	return replayed, nil
}

// knowsRoute reports whether route is in the current config or has a
// dispatcher (deliveries or state in the outbox).
func (e *Engine) knowsRoute(route string) bool {
	if c := e.cfg.Load(); c != nil && c.routes[route] != nil {
		return true
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	_, ok := e.dispatchers[route]
	return ok
}

// requeue makes deliveries pending and due now (see
// persist.Store.Requeue) and brings the counters up to date; it holds
// deadMu for reading until they are (see recountDead).
func (e *Engine) requeue(ids []string) ([]persist.Requeued, error) {
	e.deadMu.RLock()
	defer e.deadMu.RUnlock()
	res, err := e.store.Requeue(ids, e.now())
	e.requeued(res)
	return res, err
}

// requeued brings the counters up to date with what a requeue changed,
// and has the dispatchers of the routes concerned read the ready index
// anew.
func (e *Engine) requeued(res []persist.Requeued) {
	type counts struct{ dead, delivered int }
	byRoute := make(map[string]*counts)
	for _, r := range res {
		c := byRoute[r.Route]
		if c == nil {
			c = new(counts)
			byRoute[r.Route] = c
		}
		switch r.Was {
		case persist.StatusDead:
			c.dead++
		case persist.StatusDelivered:
			c.delivered++
		}
	}
	for route, c := range byRoute {
		d := e.dispatcherFor(route)
		d.countRequeued(c.dead, c.delivered)
		d.rescan()
	}
}

// heldCircuitOpen is what Held says of a route whose circuit is open.
const heldCircuitOpen = "circuit_open"

// Held says why route sends nothing now (a gate state: "paused",
// "disabled", "unverified", "removed"; or heldCircuitOpen), or "" when it
// sends: a retry or replay queues deliveries that then wait for it.
func (e *Engine) Held(route string) string {
	e.mu.RLock()
	d := e.dispatchers[route]
	e.mu.RUnlock()
	if d == nil {
		return stateRemoved
	}
	if g := d.gate(d.route.Load()); g != "" {
		return g
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.br.stateAt(d.e.now()) == circuitOpen {
		return heldCircuitOpen
	}
	return ""
}
