package module

import "github.com/hookgate/hookgate/persist"

// The engine's delivery counters (per route, and pending over all routes
// for max_pending) change here and nowhere else, so every path that moves
// a delivery between states (accept, outcome, requeue) keeps them right.

// countNew counts n deliveries just stored as pending.
func (d *dispatcher) countNew(n int64) {
	d.pending.Add(n)
	d.e.pending.Add(n)
}

// countFinal counts a pending delivery that became delivered or dead.
func (d *dispatcher) countFinal(st persist.Status) {
	d.pending.Add(-1)
	d.e.pending.Add(-1)
	switch st {
	case persist.StatusDelivered:
		d.delivered.Add(1)
	case persist.StatusDead:
		d.dead.Add(1)
	}
}

// countRequeued counts deliveries a requeue (retry, replay) made pending
// again: fromDead of them were dead and fromDelivered delivered (those
// already pending only moved).
func (d *dispatcher) countRequeued(fromDead, fromDelivered int) {
	if n := int64(fromDead + fromDelivered); n > 0 {
		d.countNew(n)
	}
	d.dead.Add(-int64(fromDead))
}

// loadCounts sets the counters from what the outbox holds at open:
// pending and dead deliveries per route. Routes with either show in stats
// even when they are no longer configured. It returns the total pending.
func (e *Engine) loadCounts(pending, dead map[string]int) int64 {
	var total int64
	for name, n := range pending {
		total += int64(n)
		e.dispatcher(name).pending.Store(int64(n))
	}
	e.pending.Store(total)
	for name, n := range dead {
		e.dispatcher(name).dead.Store(int64(n))
	}
	return total
}
