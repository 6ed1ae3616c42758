package module

import (
	"errors"
	"time"
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
	d.diskMore = true
	d.scanFrom = time.Time{}
	d.mu.Unlock()
	d.signal()
}

// rescan tells the named route's dispatcher to rescan.
func (e *engine) rescan(route string) {
	e.dispatcherFor(route).rescan()
}
