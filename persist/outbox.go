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
	// ErrTooLarge is returned by Ingest when one element's writes (its
	// event and its deliveries) do not fit in one transaction; the other
	// elements of the call may have been stored.
	ErrTooLarge = errors.New("event too large for one outbox transaction")
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
	ID      string `json:"id"`
	EventID string `json:"event_id"`
	Route   string `json:"route"`
	// EventType is the type of the event (empty for deliveries stored
	// before types were recorded).
	EventType string    `json:"event_type,omitempty"`
	Status    Status    `json:"status"`
	Attempts  int       `json:"attempts"`
	Created   time.Time `json:"created"`
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
	// ScheduleStart and ScheduleBase say where the current retry
	// schedule began: Requeue of a final (dead or delivered) delivery
	// sets them to the time of the requeue and the attempts made so far,
	// so the delivery gets its route's whole schedule again, and max_age
	// runs from then, while Attempts and the history keep counting. Both
	// are zero for a delivery never requeued: its schedule began at
	// Created.
	ScheduleStart time.Time `json:"schedule_start,omitzero"`
	ScheduleBase  int       `json:"schedule_base,omitempty"`

	// sole is set by the Badger outbox on a delivery ingested as its
	// event's only one, whose event it stored without a state record
	// (see evstate.go); the record keeps it. Copies of the struct carry
	// it; a delivery without it is simply looked up the long way.
	sole bool
	// epoch is, on a sole delivery, the epoch of the Badger outbox that
	// ingested it (Badger.knownStateless); records do not keep it.
	epoch uint64
	// attempt is, in the Badger outbox, the attempt a final delivery
	// ended with when it was also its first (as for most deliveries): it
	// is kept in the delivery's record rather than in one of its own.
	// Attempts lists it; Requeue moves it to the history.
	attempt *Attempt
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
	// Fresh says the event's ID was made for this ingest, unique by
	// construction (the gateway's own time-ordered random ids), so the
	// store need not look for an earlier event with it. An id that came
	// from outside must never be marked Fresh.
	Fresh bool
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

// Store is the outbox as the engine sees it: the storage contract every
// backend implements. The conformance suite in persist/persisttest checks
// it; a backend runs persisttest.RunConformance unchanged.
//
// Claims. The Store keeps no leases. The engine claims a delivery in its
// own memory: a dispatcher takes Refs from Due or DueFrom, passing a skip
// function that hides the ids it already holds, and later reports the
// attempt with Record, naming the Due it claimed (Outcome.ClaimedDue).
// Until then the delivery stays in the ready index, so after a crash it
// is simply due again: an attempt whose outcome was never recorded is
// made again (at-least-once). A backend shared by several processes must
// hand each ready delivery to one of them at a time by its own means (a
// consumer's ack wait) and still honour Record and ClaimedDue.
//
// Clock. Every time the store reads for itself comes from Options.Now
// (the engine's clock); times the engine decides (Due, Done, the now of
// Due and Requeue) are passed in. Expiry by retention may run on the
// backend's wall clock; the results of a look-up then lag or lead the
// injected clock by that difference.
//
// Ids. Event ids and delivery ids are chosen by the caller and unique
// for as long as their records are stored. An event record is never
// overwritten (see Ingest).
type Store interface {
	// Ingest stores each element of batch atomically (its event and all
	// its deliveries, or nothing) and returns one result per element, in
	// order, only once they are durable: on Badger synced to disk, so
	// they survive a crash of the process and of the machine. Concurrent
	// calls may share one sync. An error means no element of the call
	// may be assumed stored; the caller retries or reports failure.
	//
	// An element is a duplicate, stores nothing and reports the id of the
	// event it duplicates, when its Dedupe key was stored by an ingest
	// less than the dedupe window ago (by Options.Now), or when an event
	// with its Event.ID is still stored (any delivery not final, or
	// retained after all became final), whatever the window says. So a
	// stored event is never overwritten and its deliveries always send
	// its own payload; once the event is gone and the window has passed,
	// the id may be used again and gets a fresh record. Within one batch
	// a later element with the key of an earlier one is its duplicate.
	//
	// Deliveries are stored pending and due at their Due: in the ready
	// index, unless one with the same Route and OrderKey is unfinished,
	// in which case they wait (Delivery.Waiting) until every earlier one
	// of that key is final. An element without deliveries is stored only
	// with Keep, and then expires after the delivered retention. Ingest
	// sets Event.Remaining and Event.Deliveries.
	Ingest(ctx context.Context, batch []Ingest) ([]IngestResult, error)

	// Record writes the outcome of one claimed attempt and calls done
	// exactly once, with nil once the write is committed (visible to
	// every later read) or with the error that kept it from being
	// written. It does not wait for the write to be durable: an outcome
	// lost in a crash means the attempt is made again, which
	// at-least-once allows. Records are applied in the order they are
	// made.
	//
	// The ready-index entry at (Route, ClaimedDue) goes, whatever Status
	// says. Pending: the delivery is due again at Delivery.Due. Delivered
	// or dead: the delivery is final; its event counts one delivery less
	// in Remaining, and once none is left the event expires after the
	// longest retention among its deliveries; the delivery and its
	// attempts expire after the retention of its status (delivered or
	// dead); the next waiting delivery of its order key becomes due at
	// once (at the store's now, or its own Due if later). Attempt, when
	// not nil, is appended to the history, of which the newest
	// Options.AttemptLog are kept. Recording for an event that is gone
	// is not an error.
	Record(o Outcome, done func(error))

	// Due lists up to limit pending deliveries of route with Due at or
	// before now, in due order (ties by delivery id), skipping those for
	// which skip returns true (skip may be nil). It also returns the due
	// time of the first entry it did not take that skip does not hide
	// (one due after now, or beyond limit), or the zero time if there is
	// none. Deliveries waiting behind their order key are not listed.
	// Due writes nothing; a listed delivery is not claimed by it.
	Due(route string, now time.Time, limit int, skip func(id string) bool) ([]Ref, time.Time, error)

	// DueFrom is Due starting at the due time from instead of the
	// route's first entry, so a caller that knows everything before from
	// is taken need not walk past the deletions of finished deliveries.
	// It also returns the due time of the last entry it passed (taken or
	// skipped), a safe from for the next call.
	DueFrom(route string, from, now time.Time, limit int, skip func(id string) bool) (refs []Ref, next, last time.Time, err error)

	// Delivery, Event and Attempts look records up by id, as committed.
	// Delivery and Event return ErrNotFound for an id never stored or
	// expired by retention; Attempts returns the kept attempts of a
	// delivery in order (none for an unknown id), and Event returns the
	// payload byte for byte as ingested.
	Delivery(id string) (*Delivery, error)
	Event(id string) (*Event, error)
	Attempts(deliveryID string) ([]Attempt, error)

	// SetRetention changes the dedupe window and the retention of
	// delivered and dead deliveries for what is written from now on (a
	// config reload); zero keeps a value. What is stored keeps the
	// expiry it was written with.
	SetRetention(dedupe, delivered, dead time.Duration)

	// Pending counts pending deliveries per route, waiting ones included;
	// routes with none are absent.
	Pending() (map[string]int, error)

	// DeadCounts counts dead deliveries per route (those not yet
	// expired); routes with none are absent. taken, if not nil, is
	// called once the snapshot the counts are read from is fixed and
	// before they are counted: the counts then include every write
	// committed before the call and none after, which lets a caller line
	// them up with counters of its own. A backend without snapshots calls
	// it just before it starts counting.
	DeadCounts(taken func()) (map[string]int, error)

	// SetRouteState stores a route's operational state (paused, verified
	// endpoint, open circuit); the zero state deletes the record. It
	// returns once the write is durable: a pause must hold after a crash.
	SetRouteState(route string, st RouteState) error

	// RouteStates returns every stored route state by route name.
	RouteStates() (map[string]RouteState, error)

	// ListDeliveries returns a page of deliveries and the cursor of the
	// next page ("" after the last); see ListFilter. Bad filters and
	// cursors return errors wrapping ErrBadFilter and ErrBadCursor.
	ListDeliveries(f ListFilter) ([]*Delivery, string, error)

	// ReplayIDs selects, from the index alone, the ids of a route's dead
	// or delivered deliveries that became final (Delivery.Done) in
	// [since, until), in that order, up to limit after cursor; next
	// continues it ("" when there is no more), and requeueing the ids
	// first does not disturb it.
	ReplayIDs(route string, status Status, since, until time.Time, cursor string, limit int) (ids []string, next string, err error)

	// Requeue makes deliveries pending and due at now, ordered with
	// outcomes, durable like a Record. A final one becomes pending again
	// with its attempt count and history (the next attempt is numbered
	// after the last), its event counts it as unfinished again and stops
	// expiring, and one with an OrderKey rejoins its key's sequence; a
	// pending one due later moves to now; one already due or waiting is
	// left alone. It returns those it requeued: unknown ids, and final
	// deliveries whose event has expired, are skipped.
	Requeue(ids []string, now time.Time) ([]Requeued, error)

	// EventsReceived pages through the stored events received (by
	// Event.Received) in [since, until) (zero until: no end), oldest
	// first, ties by id: up to limit (1 to MaxEventsPage) after cursor
	// ("" for the first page); next continues it ("" when there is no
	// more); events that expired are not listed. Bad limits and cursors
	// return errors wrapping ErrBadFilter and ErrBadCursor. Badger walks
	// an index by time, so a page costs what it returns (events stored
	// by a version without that index are not listed); the NATS backend
	// has no such index and reads every event for each page.
	EventsReceived(since, until time.Time, cursor string, limit int) (events []*Event, next string, err error)

	// AddDeliveries adds pending deliveries to events already stored,
	// each atomically with its event's record: the event lists the
	// delivery in Deliveries and its route in Routes, counts it in
	// Remaining and stops expiring. The deliveries are stored as Ingest
	// stores them (due at Due, or waiting behind their order key). A
	// delivery whose event is gone is skipped, and with skipRouted so is
	// one whose event already lists its Route (it had a delivery for it),
	// which makes adding the same deliveries twice add nothing. It
	// returns, in order, whether each was added, once they are durable.
	// (NATS has no transactions across keys: it updates the event first,
	// then writes the delivery; see its AddDeliveries.)
	AddDeliveries(ds []*Delivery, skipRouted bool) (added []bool, err error)

	// Close stops accepting calls (they return ErrClosed, Record calls
	// done with it), waits for what was submitted to be committed and
	// for look-ups in progress, then releases the storage. It is safe to
	// call more than once. After Close the same location may be opened
	// again and holds everything committed.
	Close() error
}

// Claimer is implemented by a Store that several processes share. The
// in-memory claims of the Store contract keep one process from
// attempting a delivery twice at once, not two processes: a shared
// backend also hands the delivery to one of them at a time.
//
// The engine checks for it once, when it opens the store. Before an
// attempt it calls Claim; it attempts only if Claim returns true, and
// calls Release if it then lets the delivery go without recording an
// outcome. Record releases the claim itself once the outcome is
// written. A process that dies leaves its claims to expire after their
// lease; Due and DueFrom do not list deliveries another process holds.
type Claimer interface {
	// Claim takes delivery id for this process for at most lease,
	// provided it is still pending and due at due (the Due it was
	// listed with). It returns false when another process holds it or
	// it has changed since it was listed.
	Claim(id string, due time.Time, lease time.Duration) (bool, error)
	// Release gives up a claim this process holds; a no-op otherwise.
	Release(id string)
	// Watch registers changed, called with the route of deliveries
	// other processes write and of claims they release or that expire,
	// so the engine wakes that route's dispatcher.
	Watch(changed func(route string))
	// WatchRouteStates registers changed, called with every route state
	// written after the store opened, by any process (a zero state for
	// one deleted), so a pause made on one node holds on all.
	WatchRouteStates(changed func(route string, st RouteState))
}

// JobLoader is implemented by a Store that reads a batch of deliveries
// with their events faster than a Delivery and an Event call for each.
// The engine checks for it once, when it opens the store, and loads the
// deliveries a scan of the ready index found with it.
type JobLoader interface {
	// LoadJobs reads, from one snapshot (the NATS store: see its own
	// LoadJobs), each delivery of ids and, for
	// those that are pending, the record of their event as ingested
	// (Routes, Deliveries, Remaining and KeepUntil as they were then:
	// what changed since is not applied). Jobs[i] answers ids[i]:
	// Err is ErrNotFound for a delivery not stored, and for a pending
	// one whose event is not stored (Delivery set, Event nil); Event is
	// nil, with no error, for a delivery that is not pending. The error
	// is for the read as a whole (ErrClosed).
	LoadJobs(ids []string) ([]Job, error)
}

// Job is a delivery with its event, as LoadJobs reads them.
type Job struct {
	Delivery *Delivery
	Event    *Event
	Err      error
}

// Retention is how long a backend keeps what it writes: idempotency keys
// (the dedupe window), delivered deliveries and dead ones, with their
// events and attempt logs.
type Retention struct {
	Dedupe, Delivered, Dead time.Duration
}

// Final is how long a delivery that ended with status st is kept (with
// its attempts).
func (r Retention) Final(st Status) time.Duration {
	if st == StatusDead {
		return r.Dead
	}
	return r.Delivered
}

// With returns r changed by a config reload: zero values keep r's.
func (r Retention) With(dedupe, delivered, dead time.Duration) Retention {
	if dedupe > 0 {
		r.Dedupe = dedupe
	}
	if delivered > 0 {
		r.Delivered = delivered
	}
	if dead > 0 {
		r.Dead = dead
	}
	return r
}
