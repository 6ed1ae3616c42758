// Package persist is hookgate's durable outbox: events, their deliveries,
// the ready index the dispatcher drains, attempt logs and idempotency keys.
//
// It knows nothing of Caddy or HTTP. The engine in module/ talks to it
// through the Store interface, so a replicated backend can be added beside
// the Badger one without touching module/.
package persist

import (
	"context"
	"errors"
	"time"
)

// Errors a Store returns.
var (
	// ErrClosed is returned by every call made after Close began.
	ErrClosed = errors.New("outbox is closed")
	// ErrNotFound is returned by look-ups of ids the store does not hold
	// (never written, or expired by retention).
	ErrNotFound = errors.New("not found")
	// ErrTooLarge is returned by Ingest for a single request whose writes do
	// not fit in one transaction.
	ErrTooLarge = errors.New("request too large for one outbox transaction")
)

// Status is the state of a delivery.
type Status uint8

// Delivery states. A pending delivery sits in the ready index; delivered
// and dead ones are final and expire by retention.
const (
	StatusPending Status = iota + 1
	StatusDelivered
	StatusDead
)

func (s Status) String() string {
	switch s {
	case StatusPending:
		return "pending"
	case StatusDelivered:
		return "delivered"
	case StatusDead:
		return "dead"
	}
	return "unknown"
}

// ParseStatus is the inverse of Status.String.
func ParseStatus(s string) (Status, bool) {
	switch s {
	case "pending":
		return StatusPending, true
	case "delivered":
		return StatusDelivered, true
	case "dead":
		return StatusDead, true
	}
	return 0, false
}

// Event is one accepted event. Data is kept byte-for-byte as sent.
type Event struct {
	ID       string            `json:"id"`
	Type     string            `json:"type"`
	Source   string            `json:"source,omitempty"`
	Time     time.Time         `json:"time"`
	Received time.Time         `json:"received"`
	Headers  map[string]string `json:"headers,omitempty"`
	// ContentType is set for inbound events whose body was not JSON.
	ContentType string `json:"content_type,omitempty"`
	// TraceParent and TraceState carry the ingest span's W3C context, so
	// attempts made after a restart still join the original trace.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
	// Routes names the routes the event matched at ingest, and
	// Deliveries the ids of the deliveries made for them.
	Routes     []string `json:"routes,omitempty"`
	Deliveries []string `json:"deliveries,omitempty"`

	// Data is the event's payload as sent: JSON, or for an inbound body
	// that is not JSON a JSON string of it (see ContentType), or, with
	// DataBase64, the inbound body's raw bytes.
	Data []byte `json:"-"`
	// DataBase64 marks Data as raw bytes that are not valid UTF-8 (an
	// inbound body kept byte for byte): endpoints and look-ups get them
	// base64-encoded as data_base64 instead of data.
	DataBase64 bool `json:"data_base64,omitempty"`

	// Remaining counts deliveries not yet final; when it reaches zero the
	// event starts to expire (at KeepUntil).
	Remaining int   `json:"remaining"`
	KeepUntil int64 `json:"keep_until,omitempty"` // unix ns
}

// Delivery is one event bound for one route.
type Delivery struct {
	ID       string    `json:"id"`
	EventID  string    `json:"event_id"`
	Route    string    `json:"route"`
	Status   Status    `json:"status"`
	Attempts int       `json:"attempts"`
	Created  time.Time `json:"created"`
	// Due is when the next attempt may start; it is part of the ready-index
	// key, so an Outcome must carry the Due the delivery was claimed with.
	Due         time.Time `json:"due"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastStatus  int       `json:"last_status,omitempty"`
	LastClass   string    `json:"last_class,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	Done        time.Time `json:"done,omitzero"`
	// OrderKey groups deliveries of an ordered route: those with the same
	// key are attempted one at a time, in ingest (id) order.
	OrderKey string `json:"order_key,omitempty"`
	// Waiting is set on a pending delivery with an OrderKey while an
	// earlier delivery of its key is unfinished: it is not in the ready
	// index until that one is delivered or dead (see ordered.go).
	Waiting bool `json:"waiting,omitempty"`
}

// Attempt is one try at a delivery, as kept in its history.
type Attempt struct {
	N        int           `json:"n"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	Status   int           `json:"status,omitempty"`
	Class    string        `json:"class,omitempty"`
	Error    string        `json:"error,omitempty"`
	Response []byte        `json:"response,omitempty"`
	TraceID  string        `json:"trace_id,omitempty"`
}

// Ingest is one event to store with its deliveries.
type Ingest struct {
	Event      *Event
	Deliveries []*Delivery
	// Dedupe is the idempotency key; empty means none. A key seen within
	// the dedupe window makes the whole Ingest a duplicate: nothing stored.
	Dedupe string
	// Keep stores the event even when it has no deliveries.
	Keep bool
}

// IngestResult answers one Ingest.
type IngestResult struct {
	// Duplicate is set when Dedupe was seen before; ID is then the id of
	// the event stored under that key.
	Duplicate bool
	ID        string
}

// Outcome is the result of one attempt, to be recorded.
type Outcome struct {
	// Delivery is the updated record: Status, Attempts, Due (the next one,
	// when still pending) and the Last* fields.
	Delivery *Delivery
	// ClaimedDue is the Due the delivery had when it was claimed; its
	// ready-index entry is removed.
	ClaimedDue time.Time
	// Attempt is appended to the delivery's history; nil records none
	// (a requeue that spent no attempt).
	Attempt *Attempt
}

// Ref points at a due delivery in the ready index.
type Ref struct {
	ID  string
	Due time.Time
}

// Store is the outbox as the engine sees it.
type Store interface {
	// Ingest durably stores the events and their deliveries and returns
	// only once they are on disk (fsync'd). Concurrent calls share syncs.
	Ingest(ctx context.Context, batch []Ingest) ([]IngestResult, error)

	// Record writes an outcome; done is called once it is committed. It
	// does not wait for its own fsync: a lost outcome means a resend,
	// which at-least-once allows.
	Record(o Outcome, done func(error))

	// Due lists up to limit pending deliveries of route in due order,
	// skipping those for which skip returns true. It returns the due
	// time of the first entry after now, or the zero time if none.
	Due(route string, now time.Time, limit int, skip func(id string) bool) ([]Ref, time.Time, error)

	// DueFrom is Due starting at the due time from instead of the
	// route's first entry, so a caller that knows everything before from
	// is taken need not walk past the deletions of finished deliveries.
	// It also returns the due time of the last entry it passed (taken or
	// skipped), a safe from for the next call.
	DueFrom(route string, from, now time.Time, limit int, skip func(id string) bool) (refs []Ref, next, last time.Time, err error)

	// Delivery, Event and Attempts look records up by id.
	Delivery(id string) (*Delivery, error)
	Event(id string) (*Event, error)
	Attempts(deliveryID string) ([]Attempt, error)

	// SetRetention changes the dedupe window and the retention of
	// delivered and dead deliveries for what is written from now on (a
	// config reload); zero keeps a value.
	SetRetention(dedupe, delivered, dead time.Duration)

	// Pending counts pending deliveries per route.
	Pending() (map[string]int, error)

	// DeadCounts counts dead deliveries per route (those not yet expired).
	DeadCounts() (map[string]int, error)

	// SetRouteState stores a route's operational state (paused, verified
	// endpoint); the zero state deletes the record. It returns once the
	// write is on disk.
	SetRouteState(route string, st RouteState) error

	// RouteStates returns every stored route state by route name.
	RouteStates() (map[string]RouteState, error)

	// ListDeliveries returns a page of deliveries and the cursor of the
	// next page ("" after the last); see ListFilter.
	ListDeliveries(f ListFilter) ([]*Delivery, string, error)

	// ReplayIDs selects, from the index alone, the ids of a route's dead
	// or delivered deliveries that became final in [since, until), in
	// that order, up to limit after cursor; next continues it.
	ReplayIDs(route string, status Status, since, until time.Time, cursor string, limit int) (ids []string, next string, err error)

	// Requeue makes deliveries pending and due at now, ordered with
	// outcomes; final ones keep their attempt history. It returns those
	// it requeued (unknown ids are skipped).
	Requeue(ids []string, now time.Time) ([]Requeued, error)

	// Close stops the writer after it drained what was submitted, then
	// closes the database.
	Close() error
}
