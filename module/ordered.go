package module

import (
	"time"

	"go.uber.org/zap"

	"github.com/hookgate/hookgate/module/rules"
)

// The order key of an ordered route is computed for each event at
// ingest (rules.OrderKey) and stored with the delivery
// (persist.Delivery.OrderKey); the outbox lets one delivery per key into
// the ready index at a time.

// orderKey is the OrderKey of r's delivery of an event ("" when r is not
// ordered). A key that cannot be computed is logged at most once a
// minute per route.
func (r *route) orderKey(e *rules.Event, now time.Time, log *zap.Logger) string {
	if r.order == nil {
		return ""
	}
	k, err := r.order.Key(e)
	if err != nil && r.orderLog.allow(now) {
		log.Warn(`order key could not be computed; the event is ordered under "*" (logged at most once a minute per route)`,
			zap.String("route", r.name), zap.String("event", e.ID()), zap.Error(err))
	}
	return k
}
