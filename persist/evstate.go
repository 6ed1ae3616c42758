package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// An event's record (e|id: its metadata and payload, a kilobyte or more,
// in the value log) is written once, at ingest. What outcomes change
// (how many of its deliveries are unfinished, until when it is kept,
// the deliveries added to it later) is in a small state record of its
// own, c|id, which stays in the LSM tree, where compactions drop the
// versions its rewrites leave. Rewriting the event record instead cost
// a second copy of the payload in the value log per delivered event,
// and the CPU to read, decode and encode it.
//
// The event expires without being rewritten either: when its last
// delivery becomes final, its state gets the expiry (in unix seconds
// by the wall clock, as Badger's TTLs, from the retention of its
// deliveries counted from the store's clock) and an entry k|expiry id
// is written. The sweeper deletes the event, its state, its time index
// entry and that entry once the expiry has come; until it has run,
// every look-up already treats the event as gone, as Badger does a
// record past its TTL. A delivery that becomes unfinished again
// (Requeue, AddDeliveries) deletes the entry.
//
// Events stored by earlier versions have no state record: their record
// holds Remaining and KeepUntil and, once all their deliveries were
// final, a TTL. So do events kept without deliveries, whose retention
// is known at ingest, and events ingested with one delivery until it is
// final: the delivery's record is marked (Delivery.sole) so that its
// outcome need not read the event's to learn it was the last, nor, if
// this store ingested it, look for a state record (knownStateless). The first
// change to such an event writes its state; one whose record has a TTL
// is written once more, without it, when it gets an unfinished delivery.

// eventState is what the state record holds.
type eventState struct {
	remaining int
	keepUntil int64 // Event.KeepUntil: unix ns by the store's clock
	expires   int64 // unix seconds by the wall clock; 0: not expiring
	// received is Event.Received, which names the time index entry.
	received time.Time
	// routes and deliveries were added by AddDeliveries, after the
	// record's own Routes and Deliveries.
	routes, deliveries []string
}

// gone reports whether the event has expired at now (wall-clock unix
// seconds), as Badger judges a TTL.
func (st *eventState) gone(now int64) bool { return st.expires != 0 && st.expires <= now }

// applyTo sets ev's changing fields from the state.
func (st *eventState) applyTo(ev *Event) {
	ev.Remaining, ev.KeepUntil = st.remaining, st.keepUntil
	ev.Routes = append(ev.Routes, st.routes...)
	ev.Deliveries = append(ev.Deliveries, st.deliveries...)
}

// wallSeconds is the clock Badger expires records by.
func wallSeconds() int64 { return time.Now().Unix() }

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

func encodeState(st *eventState) []byte {
	b := make([]byte, 0, 48)
	b = append(b, recordV2)
	b = binary.AppendVarint(b, int64(st.remaining))
	b = binary.AppendVarint(b, st.keepUntil)
	b = binary.AppendVarint(b, st.expires)
	b = appendTime(b, st.received)
	b = appendStrings(b, st.routes)
	return appendStrings(b, st.deliveries)
}

func (d *decoder) strings() []string {
	n := d.uvarint()
	// Each string takes at least its length byte.
	if n > uint64(len(d.b)) {
		d.fail(errTruncated)
		return nil
	}
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.string()
	}
	return ss
}

func decodeState(b []byte) (eventState, error) {
	if len(b) < 1 || b[0] != recordV2 {
		return eventState{}, errors.New("event state record: unknown format version")
	}
	r := decoder{b: b[1:]}
	st := eventState{
		remaining:  r.int(),
		keepUntil:  r.varint(),
		expires:    r.varint(),
		received:   r.time(),
		routes:     r.strings(),
		deliveries: r.strings(),
	}
	return st, r.done("event state")
}

// txnState reads an event's state record; ok is false if it has none.
func txnState(txn *badger.Txn, id string) (st eventState, ok bool, err error) {
	item, err := txn.Get(stateKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	err = item.Value(func(v []byte) error {
		st, err = decodeState(v)
		return err
	})
	if err != nil {
		return st, false, fmt.Errorf("event %s: %w", id, err)
	}
	return st, true, nil
}

func putState(txn *badger.Txn, id string, st *eventState) error {
	return txn.Set(stateKey(id), encodeState(st))
}

// storedEvent is an event as a transaction finds it.
type storedEvent struct {
	id   string
	item *badger.Item // the event record
	// st is the state record, or (hasState false) what the event
	// record's own fields say.
	st       eventState
	hasState bool
	rec      *Event // the decoded record, state not applied; nil until read
}

// lookupEvent finds event id in txn; nil if it is gone: never stored,
// swept, past its expiry or past its record's TTL.
func lookupEvent(txn *badger.Txn, id string) (*storedEvent, error) {
	st, has, err := txnState(txn, id)
	if err != nil {
		return nil, err
	}
	if has && st.gone(wallSeconds()) {
		return nil, nil
	}
	item, err := txn.Get(eventKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	se := &storedEvent{id: id, item: item, st: st, hasState: has}
	if !has {
		ev, err := se.record()
		if err != nil {
			return nil, err
		}
		se.st = eventState{remaining: ev.Remaining, keepUntil: ev.KeepUntil, received: ev.Received}
	}
	return se, nil
}

// record decodes the event record (once).
func (se *storedEvent) record() (*Event, error) {
	if se.rec != nil {
		return se.rec, nil
	}
	err := se.item.Value(func(v []byte) error {
		var err error
		se.rec, err = decodeEvent(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", se.id, err)
	}
	return se.rec, nil
}

// event returns the event as look-ups show it: its record with its
// state applied. It is the caller's to change.
func (se *storedEvent) event() (*Event, error) {
	rec, err := se.record()
	if err != nil {
		return nil, err
	}
	ev := *rec
	ev.Routes = append([]string(nil), rec.Routes...)
	ev.Deliveries = append([]string(nil), rec.Deliveries...)
	if se.hasState {
		se.st.applyTo(&ev)
	}
	return &ev, nil
}

// epochs numbers the stores opened by this process (Badger.epoch).
var epochs atomic.Uint64

// maxStated bounds Badger.stated: past it, the committer starts a new
// epoch, and the deliveries of the old one are looked up the long way.
// Every sole delivery's final outcome notes its event, so under load the
// epoch turns every few thousand outcomes, and only the deliveries in
// flight then pay for a look-up; the map, sized once, is never grown.
const maxStated = 1 << 14

// knownStateless reports whether d's event certainly has no state record,
// so that its outcome need not look for one (a look-up that finds nothing
// costs more than the rest of a delivered outcome: it reaches every level
// of the tree). That holds for a sole delivery this store ingested (its
// epoch is the store's, which decoded records never carry) while nothing
// has written its event's state: reopen and the delivery's own final
// outcome do, and both note the event in stated. A group applied again
// after a split may find an event noted by the part that was undone:
// that costs a look-up, never a wrong answer.
func (s *Badger) knownStateless(d *Delivery) bool {
	if !d.sole || d.epoch == 0 || d.epoch != s.epoch {
		return false
	}
	_, noted := s.stated[d.EventID]
	return !noted
}

// noteStated records that id's state is written by other than its sole
// delivery's outcome (committer only).
func (s *Badger) noteStated(id string) {
	if len(s.stated) >= maxStated {
		clear(s.stated)
		s.epoch = epochs.Add(1)
	}
	s.stated[id] = struct{}{}
}

// finishEventDelivery counts one of the event's deliveries as final; the
// event expires once all are, after the longest retention among them
// (ttl is this delivery's), counted from the store's clock.
func (s *Badger) finishEventDelivery(txn *badger.Txn, d *Delivery, ttl time.Duration) error {
	eventID := d.EventID
	var (
		st  eventState
		has bool
		err error
	)
	if !s.knownStateless(d) {
		if st, has, err = txnState(txn, eventID); err != nil {
			return err
		}
	}
	if has && st.gone(wallSeconds()) {
		return nil
	}
	switch {
	case has:
	case d.sole:
		// Stored with this delivery alone and changed by nothing since
		// (a change would have written the state): its record says one
		// delivery remaining, received when the delivery was created.
		// Reading the record would say the same, at the price of its
		// payload.
		st = eventState{remaining: 1, received: d.Created}
	default:
		se, err := lookupEvent(txn, eventID)
		if se == nil || err != nil {
			return err
		}
		st = se.st
	}
	now := s.now()
	if until := now.Add(ttl).UnixNano(); until > st.keepUntil {
		st.keepUntil = until
	}
	if st.remaining > 0 {
		st.remaining--
	}
	if st.remaining == 0 {
		// The wall-clock second Badger would expire a record with this
		// TTL at.
		exp := max(time.Now().Add(time.Duration(st.keepUntil-now.UnixNano())).Unix(), 1)
		if exp != st.expires {
			if err := dropExpiry(txn, eventID, &st); err != nil {
				return err
			}
			if err := txn.Set(expiryKey(exp, eventID), nil); err != nil {
				return err
			}
			st.expires = exp
		}
	}
	if d.sole {
		// Its state exists now: an outcome recorded twice (an attempt
		// racing the removal of its route, say), from a copy taken at
		// ingest after one read back from the outbox or the other way
		// round, must count from it.
		s.noteStated(eventID)
	}
	return putState(txn, eventID, &st)
}

// dropExpiry deletes the sweeper's entry of an event, if it has one.
func dropExpiry(txn *badger.Txn, id string, st *eventState) error {
	if st.expires == 0 {
		return nil
	}
	if err := txn.Delete(expiryKey(st.expires, id)); err != nil {
		return err
	}
	st.expires = 0
	return nil
}

// reopen makes se unfinished again after its state was changed (by
// Requeue or AddDeliveries): its expiry goes, and a record with a TTL
// is written again without one, with its time index entry.
func (se *storedEvent) reopen(s *Badger, txn *badger.Txn) error {
	s.noteStated(se.id)
	if err := dropExpiry(txn, se.id, &se.st); err != nil {
		return err
	}
	if se.item.ExpiresAt() != 0 {
		raw, err := se.item.ValueCopy(nil)
		if err != nil {
			return err
		}
		if err := txn.Set(eventKey(se.id), raw); err != nil {
			return err
		}
		if err := txn.Set(receivedKey(se.st.received, se.id), nil); err != nil {
			return err
		}
	}
	return putState(txn, se.id, &se.st)
}

// forgetEvent deletes what is left of an event that is gone by its state
// but not yet swept: its record, state, sweeper entry and time index
// entry. The sweeper does it in time; an ingest that uses the id again
// does it at once, so nothing of the old event outlives it.
func forgetEvent(txn *badger.Txn, id string, st *eventState) error {
	if err := dropExpiry(txn, id, st); err != nil {
		return err
	}
	if err := txn.Delete(receivedKey(st.received, id)); err != nil {
		return err
	}
	if err := txn.Delete(eventKey(id)); err != nil {
		return err
	}
	return txn.Delete(stateKey(id))
}
