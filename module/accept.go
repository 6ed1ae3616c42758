package module

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/hookgate/hookgate/module/rules"
	"github.com/hookgate/hookgate/persist"
)

// Errors Accept returns besides the outbox's own (persist.ErrStorageFull,
// persist.ErrTooLarge, persist.ErrClosed).
var (
	// ErrNotRunning means the webhooks app has not started, or has
	// stopped: nothing was stored.
	ErrNotRunning = errors.New("the webhooks app is not running")
	// ErrOverloaded means storing the events would take the pending
	// deliveries over max_pending: nothing was stored.
	ErrOverloaded = errors.New("too many pending deliveries (max_pending)")
)

// Accepted answers one event given to Accept.
type Accepted struct {
	// ID is the event's id: the one it came with, the one assigned, or
	// for a duplicate the id stored under the same key before.
	ID string
	// Duplicate is set when the id was seen within the dedupe window:
	// nothing new was stored for this event.
	Duplicate bool
	// Routes names the routes the event matched, in name order.
	Routes []string
}

// Accept stores events durably with one delivery per matching route and
// queues those deliveries. It returns only once everything is on disk
// (fsync'd), or with an error. After an error nothing was stored, except
// that some events of a batch may have been: with persist.ErrTooLarge
// (the Badger outbox splits a batch over transactions), and on NATS for
// any error of the servers, which store a batch's events separately.
// Sent again, such events are duplicates if they have an id.
//
// Each event needs Type and Data; ID (the idempotency key, sent as
// webhook-id), Time, Source, Headers and ContentType are optional. Accept
// fills in the rest: an id when there is none, the received and event
// times, and the trace context of ctx, so that delivery attempts join
// the ingest's trace even after a restart. Matching, dedupe, max_pending
// and the counters all happen here, against one config: a reload during
// the call cannot mix two.
func (e *Engine) Accept(ctx context.Context, events []*persist.Event) ([]Accepted, error) {
	cfg := e.cfg.Load()
	if cfg == nil {
		return nil, ErrNotRunning
	}
	now := e.now()
	var tc traceCarrier
	propagator.Inject(ctx, &tc)
	tp, ts := tc.parent, tc.state

	batch := make([]persist.Ingest, len(events))
	var newDeliveries int64
	for i, ev := range events {
		in := &batch[i]
		in.Event = ev
		ev.Received = now
		if ev.Time.IsZero() {
			ev.Time = now
		}
		if ev.ID == "" {
			ev.ID, in.Fresh = newID("evt_", now), true
		} else {
			in.Dedupe = ev.ID
		}
		ev.TraceParent, ev.TraceState = tp, ts
		ev.Routes, ev.Deliveries = nil, nil
		e.match(cfg, in, now)
		in.Keep = cfg.keepUnmatched
		newDeliveries += int64(len(in.Deliveries))
	}
	if newDeliveries > 0 {
		// Requests being stored count too (admitting), or concurrent
		// ones would each see room for themselves and all go in.
		if e.pending.Load()+e.admitting.Add(newDeliveries) > cfg.maxPending {
			e.admitting.Add(-newDeliveries)
			// A retry of events that were stored (the answer to the first
			// try was lost) is a duplicate, as it would be below the limit:
			// answering 503 would leave the client no way to learn that.
			if out := e.storedAlready(batch); out != nil {
				return out, nil
			}
			return nil, ErrOverloaded
		}
		defer e.admitting.Add(-newDeliveries)
	}

	e.reserve(batch)
	results, err := e.store.Ingest(ctx, batch)
	if err != nil {
		for _, in := range batch {
			e.release(in.Deliveries, true)
		}
		if errors.Is(err, persist.ErrStorageFull) {
			// As over max_pending: a client whose first answer was lost
			// learns that its events are stored.
			if out := e.storedAlready(batch); out != nil {
				return out, nil
			}
		}
		return nil, err
	}
	out := make([]Accepted, len(results))
	stored := 0
	for i, res := range results {
		out[i] = Accepted{ID: res.ID, Duplicate: res.Duplicate}
		if res.Duplicate {
			e.release(batch[i].Deliveries, false)
			continue
		}
		out[i].Routes = batch[i].Event.Routes
		stored++
		e.enqueue(batch[i])
	}
	if stored > 0 {
		countIngested(events[0].Source, stored)
	}
	return out, nil
}

// storedAlready answers batch as duplicates if every event in it has an
// id the client gave and is stored under it; nil otherwise. Only on
// Badger, where an event is stored with its deliveries in one
// transaction: on NATS a refused ingest can leave an event record
// without its deliveries, which only the store's own duplicate path
// repairs, so there the client is told to retry later instead.
func (e *Engine) storedAlready(batch []persist.Ingest) []Accepted {
	if _, ok := e.store.(*persist.Badger); !ok {
		return nil
	}
	out := make([]Accepted, len(batch))
	for i, in := range batch {
		if in.Dedupe == "" {
			return nil
		}
		if ev, err := e.store.Event(in.Dedupe); err != nil || ev == nil {
			return nil
		}
		out[i] = Accepted{ID: in.Dedupe, Duplicate: true}
	}
	return out
}

// match adds a delivery to in for every route of cfg that takes the
// event (see takes).
func (e *Engine) match(cfg *runtimeConfig, in *persist.Ingest, now time.Time) {
	ev := in.Event
	var c *rules.Event // made for the first route with a rule or an order key
	for _, name := range cfg.order {
		rt := cfg.routes[name]
		if c == nil && (rt.when != nil || rt.order != nil) {
			c = rules.NewEvent(ev)
		}
		if !takes(cfg, rt, ev, c, now) {
			continue
		}
		ev.Routes = append(ev.Routes, name)
		in.Deliveries = append(in.Deliveries, &persist.Delivery{
			ID:        newID("dlv_", now),
			EventID:   ev.ID,
			EventType: ev.Type,
			Route:     name,
			Status:    persist.StatusPending,
			Created:   now,
			Due:       now,
			// Computed now, from the event as it came in.
			OrderKey: rt.orderKey(c, now, cfg.logger),
		})
	}
}

// takes reports whether route rt takes the event ev (c wraps it for
// rules; nil when rt has none): its topics, then its rule. A rule that cannot be evaluated
// counts as no match; it is counted, and logged at most once a minute
// per route.
func takes(cfg *runtimeConfig, rt *route, ev *persist.Event, c *rules.Event, now time.Time) bool {
	if !rt.matches(ev.Type) {
		return false
	}
	if rt.when == nil {
		return true
	}
	ok, err := rt.when.Eval(c)
	if err != nil {
		countRuleError(rt.name)
		if rt.ruleLog.allow(now) {
			cfg.logger.Warn("rule could not be evaluated; counted as no match (logged at most once a minute per route)",
				zap.String("route", rt.name), zap.String("event", ev.ID), zap.Error(err))
		}
	}
	return ok
}

// reserve hides the deliveries of batch from the scanners until they are
// offered or released (see dispatcher.reserve).
func (e *Engine) reserve(batch []persist.Ingest) {
	for _, in := range batch {
		for _, dl := range in.Deliveries {
			e.dispatcherFor(dl.Route).reserve(dl.ID)
		}
	}
}

// release ends the reservations of deliveries that will not be offered;
// stored is set when a failed store call may have written them anyway.
func (e *Engine) release(ds []*persist.Delivery, stored bool) {
	for _, dl := range ds {
		e.dispatcherFor(dl.Route).release(dl.ID, stored)
	}
}

// enqueue offers a stored event's deliveries to their dispatchers and
// counts them as pending.
func (e *Engine) enqueue(in persist.Ingest) {
	for _, dl := range in.Deliveries {
		d := e.dispatcherFor(dl.Route)
		d.countNew(1)
		if dl.Waiting {
			// Behind an earlier delivery of its order key: the outbox
			// puts it in the ready index when its turn comes.
			// Its predecessor may have finished while it was reserved,
			// putting it in the ready index where a scan skipped it.
			d.release(dl.ID, true)
			continue
		}
		d.offer(&job{d: dl, ev: in.Event})
	}
}
