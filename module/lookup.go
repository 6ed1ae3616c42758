package module

import (
	"errors"

	"github.com/hookgate/hookgate/persist"
)

// Look-ups for operators: the admin API, the CLI and the console read
// the outbox through these, by id or through its paged indexes, never by
// scanning it.

// EventRecord is an event with its deliveries, each with its attempts.
type EventRecord struct {
	Event      *persist.Event
	Deliveries []DeliveryRecord
}

// DeliveryRecord is a delivery with every attempt kept, oldest first.
type DeliveryRecord struct {
	*persist.Delivery
	Attempts []persist.Attempt
}

// Event returns an event and its deliveries. Deliveries that expired
// before their event are left out. It fails with persist.ErrNotFound for
// an event never stored (or stored only when keep_unmatched is set) or
// expired by retention.
func (e *Engine) Event(id string) (*EventRecord, error) {
	ev, err := e.store.Event(id)
	if err != nil {
		return nil, err
	}
	rec := &EventRecord{Event: ev, Deliveries: make([]DeliveryRecord, 0, len(ev.Deliveries))}
	for _, did := range ev.Deliveries {
		d, err := e.store.Delivery(did)
		if errors.Is(err, persist.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		atts, err := e.store.Attempts(did)
		if err != nil {
			return nil, err
		}
		rec.Deliveries = append(rec.Deliveries, DeliveryRecord{Delivery: d, Attempts: atts})
	}
	return rec, nil
}

// Delivery returns one delivery with its attempts.
func (e *Engine) Delivery(id string) (*DeliveryRecord, error) {
	d, err := e.store.Delivery(id)
	if err != nil {
		return nil, err
	}
	atts, err := e.store.Attempts(id)
	if err != nil {
		return nil, err
	}
	return &DeliveryRecord{Delivery: d, Attempts: atts}, nil
}

// Deliveries returns a page of deliveries and the cursor of the next page
// ("" after the last); see persist.ListFilter.
func (e *Engine) Deliveries(f persist.ListFilter) ([]*persist.Delivery, string, error) {
	return e.store.ListDeliveries(f)
}
