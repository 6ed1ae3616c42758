package module

import (
	"errors"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hookgate/hookgate/persist"
)

// This file is the engine's control surface for operators: what the admin
// API and the CLI call. The dispatcher side implements the behaviour.

// errUnknownRoute is returned for a route the engine has never seen (not
// in any config and nothing stored for it).
var errUnknownRoute = errors.New("unknown route")

// RouteStats is one route's state, as `GET /webhooks/stats` shows it.
type RouteStats struct {
	Route string `json:"route"`
	// State is "active", "paused" (by an operator, or after a 410),
	// "disabled" (by config), "unverified" (verify_endpoint pending) or
	// "removed" (not in the current config; its deliveries wait).
	State       string    `json:"state"`
	Pending     int64     `json:"pending"`
	InFlight    int       `json:"in_flight"`
	Delivered   int64     `json:"delivered"` // since the process started
	Dead        int64     `json:"dead"`
	Circuit     string    `json:"circuit"` // "closed", "open" or "half_open"
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

// setPaused pauses or resumes the named route: a paused route keeps
// matching and queueing events, and sends nothing until resumed. The
// state is kept in the outbox, so it holds across restarts and reloads.
// It fails with errUnknownRoute for a route the engine has no dispatcher
// for (never configured, nothing stored).
func (e *Engine) setPaused(route string, paused bool) error {
	e.mu.RLock()
	d, ok := e.dispatchers[route]
	e.mu.RUnlock()
	if !ok {
		return errUnknownRoute
	}
	reason := ""
	if paused {
		reason = "paused by an operator"
	}
	changed, err := d.setPaused(paused, reason)
	if err != nil || !changed {
		return err
	}
	if paused {
		e.logger().Info("route paused", zap.String("route", route))
	} else {
		e.logger().Info("route resumed", zap.String("route", route))
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

// routeStats returns every route's state and counters, sorted by name:
// the routes of the current config and those the outbox still holds
// deliveries or state for.
func (e *Engine) routeStats() []RouteStats {
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
	if g := d.gate(d.route.Load()); g != "" {
		st.State = g
	}
	d.mu.Lock()
	st.InFlight = d.inflight
	st.Circuit = d.br.stateAt(now)
	d.mu.Unlock()
	if ns := d.lastSuccess.Load(); ns != 0 {
		st.LastSuccess = time.Unix(0, ns).UTC()
	}
	if ns := d.lastFailure.Load(); ns != 0 {
		st.LastFailure = time.Unix(0, ns).UTC()
	}
	return st
}

// requeued tells the engine that a requeue (retry, replay) made
// deliveries of route pending again: fromDead of them were dead and
// fromDelivered delivered (those already pending only moved). It keeps
// the pending and dead counts right and makes the dispatcher rescan.
func (e *Engine) requeued(route string, fromDead, fromDelivered int) {
	d := e.dispatcherFor(route)
	if n := int64(fromDead + fromDelivered); n > 0 {
		d.pending.Add(n)
		e.pending.Add(n)
	}
	d.dead.Add(-int64(fromDead))
	d.rescan()
}
