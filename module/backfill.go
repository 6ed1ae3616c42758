package module

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/hookgate/hookgate/module/rules"
	"github.com/hookgate/hookgate/persist"
)

// ErrBadWindow is returned by Backfill for a window that ends before it
// starts.
var ErrBadWindow = errors.New("the window ends before it starts: since must be before until")

// backfillPage is how many events a backfill reads and adds deliveries
// for at a time.
const backfillPage = 500

// BackfillOptions say which events a backfill offers and what it does.
type BackfillOptions struct {
	// Since and Until bound the window of received times, [Since, Until);
	// a zero Until (or one in the future) is now.
	Since, Until time.Time
	// DryRun counts what would be queued and queues nothing.
	DryRun bool
	// Redeliver queues a delivery also for events that already have one
	// for the route.
	Redeliver bool
}

// BackfillResult counts what a backfill did.
type BackfillResult struct {
	Route string `json:"route"`
	// Offered is how many stored events were received in the window.
	Offered int `json:"offered"`
	// Matched is how many of those the route's topics and rule take.
	Matched int `json:"matched"`
	// Queued is how many deliveries were added (with DryRun: would be).
	Queued int `json:"queued"`
	// Skipped is how many matched events were left alone because they
	// already have a delivery for the route (never with Redeliver).
	Skipped int  `json:"skipped"`
	DryRun  bool `json:"dry_run,omitempty"`
}

// Backfill offers the stored events received in a window to the named
// route of the current config, as if they had just come in: those its
// topics and rule take get a pending delivery, due now (and in ingest
// order on an ordered route). Events that already have a delivery for
// the route are skipped unless opt.Redeliver is set, so repeating a
// backfill queues nothing new. Each delivery is written durably with its
// event's record before it is queued; on an error the result counts what
// was done before it.
//
// It fails with ErrUnknownRoute for a route not in the current config,
// ErrBadWindow when Since is not before Until, ErrOverloaded when the
// deliveries would take the pending ones over max_pending (those of
// earlier pages stay queued), and ctx's error when it ends.
func (e *Engine) Backfill(ctx context.Context, route string, opt BackfillOptions) (BackfillResult, error) {
	res := BackfillResult{Route: route, DryRun: opt.DryRun}
	cfg := e.cfg.Load()
	if cfg == nil {
		return res, ErrNotRunning
	}
	rt := cfg.routes[route]
	if rt == nil {
		return res, ErrUnknownRoute
	}
	until := opt.Until
	if now := e.now(); until.IsZero() || until.After(now) {
		until = now
	}
	if !opt.Since.Before(until) {
		return res, ErrBadWindow
	}
	cursor := ""
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		evs, next, err := e.store.EventsReceived(opt.Since, until, cursor, backfillPage)
		if err != nil {
			return res, err
		}
		if err := e.backfillPage(cfg, rt, evs, opt, &res); err != nil {
			return res, err
		}
		if next == "" {
			return res, nil
		}
		cursor = next
	}
}

// backfillPage offers one page of events to rt.
func (e *Engine) backfillPage(cfg *runtimeConfig, rt *route, evs []*persist.Event, opt BackfillOptions, res *BackfillResult) error {
	now := e.now()
	var (
		ds    []*persist.Delivery
		byDlv = make(map[string]*persist.Event)
	)
	for _, ev := range evs {
		res.Offered++
		c := rules.NewEvent(ev)
		if !takes(cfg, rt, ev, c, now) {
			continue
		}
		res.Matched++
		if !opt.Redeliver && slices.Contains(ev.Routes, rt.name) {
			res.Skipped++
			continue
		}
		if opt.DryRun {
			res.Queued++
			continue
		}
		d := &persist.Delivery{
			ID:        newID("dlv_", now),
			EventID:   ev.ID,
			EventType: ev.Type,
			Route:     rt.name,
			Status:    persist.StatusPending,
			Created:   now,
			Due:       now,
			OrderKey:  rt.orderKey(c, now, cfg.logger),
		}
		ds = append(ds, d)
		byDlv[d.ID] = ev
	}
	if len(ds) == 0 {
		return nil
	}
	if e.pending.Load()+int64(len(ds)) > cfg.maxPending {
		return ErrOverloaded
	}
	disp := e.dispatcherFor(rt.name)
	for _, d := range ds {
		disp.reserve(d.ID)
	}
	added, err := e.store.AddDeliveries(ds, !opt.Redeliver)
	if err != nil {
		e.release(ds, true)
		return err
	}
	for i, d := range ds {
		if !added[i] {
			// Gone, or routed by a backfill running at the same time.
			res.Skipped++
			disp.release(d.ID, false)
			continue
		}
		res.Queued++
		disp.countNew(1)
		if d.Waiting {
			disp.release(d.ID, true) // as in Engine.enqueue
		} else {
			disp.offer(&job{d: d, ev: byDlv[d.ID]})
		}
	}
	return nil
}
