package module

import (
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/hookgate/hookgate/persist"
)

// The engine's delivery counters (per route, and pending over all routes
// for max_pending) change here and nowhere else, so every path that moves
// a delivery between states (accept, outcome, requeue) keeps them right.
// Dead deliveries also leave by expiry (dead_retention), which Badger does
// silently: recountDead brings the dead counts back to the outbox's.

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

// defaultDeadRecountEvery is how often the dead counts are recounted;
// see Engine.deadRecountEvery.
const defaultDeadRecountEvery = time.Minute

// deadRecountShare keeps the recount to at most 1/deadRecountShare of
// the time, however many dead deliveries are kept: the wait after a
// recount is at least this many times what it took.
const deadRecountShare = 20

// recountDeadLoop recounts the dead deliveries every deadRecountEvery
// (or longer, see deadRecountShare) until stop is closed.
func (e *Engine) recountDeadLoop(stop <-chan struct{}) {
	timer := time.NewTimer(e.deadRecountEvery)
	defer timer.Stop()
	for {
		select {
		case <-stop:
			return
		case <-timer.C:
		}
		began := time.Now()
		func() {
			log := e.logger()
			defer func() {
				if v := recover(); v != nil {
					logPanic(log, "dead recount panic", v)
				}
			}()
			if err := e.recountDead(); err != nil && !errors.Is(err, persist.ErrClosed) {
				log.Error("recounting dead deliveries", zap.Error(err))
			}
			if e.claimer != nil {
				if err := e.recountPending(); err != nil && !errors.Is(err, persist.ErrClosed) {
					log.Error("recounting pending deliveries", zap.Error(err))
				}
			}
		}()
		timer.Reset(max(e.deadRecountEvery, deadRecountShare*time.Since(began)))
	}
}

// recountDead sets every route's dead count to what the dead index
// holds. The counts move with outcomes and requeues as they happen, but
// dead deliveries that expire by dead_retention leave without a word. It
// reads the index (keys only) from a snapshot fixed while no change of
// the counts is under way (deadMu), and adds to each count the
// difference between the index and the count at that instant, so
// changes made while it counts are neither lost nor counted twice.
func (e *Engine) recountDead() error {
	var base map[string]int64
	e.deadMu.Lock()
	locked := true
	unlock := func() {
		if locked {
			locked = false
			e.deadMu.Unlock()
		}
	}
	defer unlock()
	counts, err := e.store.DeadCounts(func() {
		e.mu.RLock()
		base = make(map[string]int64, len(e.dispatchers))
		for name, d := range e.dispatchers {
			base[name] = d.dead.Load()
		}
		e.mu.RUnlock()
		unlock()
	})
	if err != nil {
		return err
	}
	for name, was := range base {
		if n := int64(counts[name]); n != was {
			e.dispatcherFor(name).dead.Add(n - was)
		}
	}
	// A route with dead deliveries and no dispatcher yet had none of its
	// own changes counted.
	for name, n := range counts {
		if _, ok := base[name]; !ok {
			e.dispatcherFor(name).dead.Add(int64(n))
		}
	}
	return nil
}
