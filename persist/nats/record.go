package natsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// submit runs fn on the writer of delivery id: the writes of one
// delivery are applied in the order they were made.
func (s *Store) submit(id string, fn func()) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return persist.ErrClosed
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	s.ops.Add(1)
	s.shards[h.Sum32()%uint32(len(s.shards))] <- func() {
		defer s.ops.Done()
		fn()
	}
	return nil
}

// Record implements persist.Store. The outcome is written by the
// delivery's writer; a claim this node holds on the delivery is
// released once it is.
func (s *Store) Record(o persist.Outcome, done func(error)) {
	if o.Delivery == nil {
		done(errors.New("record: outcome without a delivery"))
		return
	}
	d := *o.Delivery
	var att *persist.Attempt
	if o.Attempt != nil {
		a := *o.Attempt
		att = &a
	}
	if err := s.submit(d.ID, func() {
		err := s.record(&d, att)
		if err == nil {
			s.releaseClaim(d.ID)
		}
		done(err)
	}); err != nil {
		done(err)
	}
}

func (s *Store) record(d *persist.Delivery, att *persist.Attempt) error {
	ctx, cancel := ctxOp()
	defer cancel()
	final := d.Status == persist.StatusDelivered || d.Status == persist.StatusDead
	var ttl time.Duration
	if final {
		ttl = s.ret.Load().Final(d.Status)
		d.Waiting = false
	}
	wasPending, err := s.writeOutcome(ctx, d, att, ttl)
	if err != nil {
		return err
	}
	if final && wasPending {
		if err := s.countDown(ctx, d.EventID, d.ID, ttl); err != nil {
			return err
		}
		if d.OrderKey != "" {
			return s.promote(ctx, d.Route, d.OrderKey)
		}
	}
	return nil
}

// currentDelivery returns the stored record of delivery id and its
// revision, from the mirror when it has it (unless fromServer), else
// from the server; nil if there is none.
func (s *Store) currentDelivery(ctx context.Context, id string, fromServer bool) (*persist.Delivery, uint64, error) {
	if p, rev, ok := s.mirror.deliveryRev(id); ok && !fromServer {
		return p, rev, nil
	}
	e, err := s.deliveries.get(ctx, id)
	if err != nil || e.rev == 0 || e.deleted {
		return nil, 0, err
	}
	var p persist.Delivery
	if json.Unmarshal(e.val, &p) != nil {
		// Unreadable: treated as pending, and never written over with
		// an expected revision.
		return nil, 0, nil
	}
	return &p, e.rev, nil
}

// writeOutcome writes the delivery and attempt of an outcome, and says
// whether the delivery was pending before it: only then does a final
// outcome count it off its event. The outcome of a delivery another node
// finished meanwhile only adds its attempt to the history.
func (s *Store) writeOutcome(ctx context.Context, d *persist.Delivery, att *persist.Attempt, ttl time.Duration) (wasPending bool, err error) {
	final := d.Status == persist.StatusDelivered || d.Status == persist.StatusDead
	for tries := 0; tries < 100; tries++ {
		// The record this outcome replaces, written over only if it is
		// still the stored one. The first try takes it from the mirror,
		// which has it for a delivery this node claimed. Two nodes'
		// claims overlap when a lease runs out mid-attempt; should the
		// other's outcome be written meanwhile, the next try reads it
		// from the server.
		prev, prevRev, err := s.currentDelivery(ctx, d.ID, tries > 0)
		if err != nil {
			return false, err
		}
		wasPending = prev == nil || prev.Status == persist.StatusPending
		if !wasPending {
			// Another node's outcome finished the delivery: the first
			// final outcome stays, with its attempt. Written over it, a
			// retry would make the delivery pending again, to be sent
			// once more, and a final one would drop the attempt the
			// record holds; this attempt only joins the history, which
			// expires with the delivery.
			return false, s.appendAttempt(ctx, d.ID, att, s.ret.Load().Final(prev.Status))
		}
		var expect *uint64
		if prev != nil {
			expect = &prevRev
		}
		if prev != nil && final && prev.Attempts == 0 && att != nil && att.N == 1 &&
			len(att.Response)+len(att.Error) <= maxEmbeddedAttempt {
			// Its first attempt was its last, as for most deliveries:
			// the attempt goes in the delivery's record, one replicated
			// write instead of two. Not after another node's attempt,
			// whose history must expire with the delivery.
			err := s.putDeliveryRecord(ctx, deliveryRecord{d, att}, ttl, expect)
			if errors.Is(err, errConflict) {
				continue
			}
			return wasPending, err
		}
		// The delivery and its history are separate records: write them
		// at once. An attempt appended twice (a conflict, then the next
		// try) is kept once.
		putErr := make(chan error, 1)
		go func() { putErr <- s.putDeliveryRecord(ctx, deliveryRecord{Delivery: d}, ttl, expect) }()
		attErr := s.appendAttempt(ctx, d.ID, att, ttl)
		putE := <-putErr
		if errors.Is(putE, errConflict) && attErr == nil {
			continue
		}
		return wasPending, errors.Join(putE, attErr)
	}
	return false, fmt.Errorf("delivery %s: too many conflicting writes", d.ID)
}

// deliveryRecord is what the deliveries bucket holds: the delivery and,
// when its first attempt was also its last, that attempt, which is then
// not in the attempts bucket (Attempts reads both). Requeue moves it
// there before the delivery is attempted again.
type deliveryRecord struct {
	*persist.Delivery
	Attempt *persist.Attempt `json:"final_attempt,omitempty"`
}

// maxEmbeddedAttempt bounds the response excerpt and error of an attempt
// kept in a delivery's record: every node's watch of the deliveries
// bucket carries that record, which the attempts bucket's are not. A
// longer one goes to the attempts bucket as before.
const maxEmbeddedAttempt = 512

func (s *Store) putDelivery(ctx context.Context, d *persist.Delivery, ttl time.Duration) error {
	return s.putDeliveryRecord(ctx, deliveryRecord{Delivery: d}, ttl, nil)
}

// putDeliveryRecord writes r; expect, when not nil, is the revision the
// record must be at (errConflict if it is not).
func (s *Store) putDeliveryRecord(ctx context.Context, r deliveryRecord, ttl time.Duration, expect *uint64) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	rev, err := s.deliveries.put(ctx, r.ID, b, expect, ttl)
	if err != nil {
		return err
	}
	c := *r.Delivery
	s.mirror.applyDelivery(c.ID, &c, rev, false)
	return nil
}

// appendAttempt adds att to the history of id, keeping the newest
// AttemptLog; ttl > 0 makes the history expire with its final delivery,
// 0 keeps it.
func (s *Store) appendAttempt(ctx context.Context, id string, att *persist.Attempt, ttl time.Duration) error {
	if att != nil && att.N == 1 {
		// A first attempt has no history to read: create it. Should
		// there be one after all (a requeued delivery numbering afresh),
		// the create fails and the loop below appends.
		b, err := json.Marshal([]persist.Attempt{*att})
		if err != nil {
			return err
		}
		zero := uint64(0)
		if _, err := s.attempts.put(ctx, id, b, &zero, ttl); !errors.Is(err, errConflict) {
			return err
		}
	}
	for tries := 0; tries < 100; tries++ {
		e, err := s.attempts.get(ctx, id)
		if err != nil {
			return err
		}
		var as []persist.Attempt
		if e.rev != 0 && !e.deleted {
			if err := json.Unmarshal(e.val, &as); err != nil {
				return fmt.Errorf("decoding attempts of %s: %v", id, err)
			}
		}
		if att == nil && len(as) == 0 {
			return nil
		}
		// Appending an attempt already there (a retried requeue, moving
		// the one its record held) changes nothing but the expiry.
		if att != nil && !slices.ContainsFunc(as, func(h persist.Attempt) bool { return sameAttempt(h, *att) }) {
			as = append(as, *att)
		}
		if n := s.opts.AttemptLog; len(as) > n {
			as = as[len(as)-n:]
		}
		b, err := json.Marshal(as)
		if err != nil {
			return err
		}
		if _, err := s.attempts.put(ctx, id, b, &e.rev, ttl); !errors.Is(err, errConflict) {
			return err
		}
	}
	return fmt.Errorf("attempts of %s: too many conflicting writes", id)
}

// updateEvent applies fn to event id with a compare-and-set; a missing
// event is not an error (fn is not called).
func (s *Store) updateEvent(ctx context.Context, id string, fn func(r *eventRecord) time.Duration) error {
	for tries := 0; tries < 100; tries++ {
		// The record the delivery was just sent from (or, for a
		// delivery sent as ingested, the one this node wrote) is
		// usually still the current one: start from it, decoded, rather
		// than read and decode it again. If it is not, the
		// compare-and-set fails and the next try reads.
		var (
			rev uint64
			r   *eventRecord
			ok  bool
		)
		if tries == 0 {
			var re recentEvent
			if re, ok = s.recent.take(id); ok {
				rev, r = re.rev, re.rec
			} else if in, found := s.ingested.take(id); found {
				// Handed to the engine at ingest, the event was never
				// read: start from the record this node wrote.
				rev, r, ok = in.rev, in.rec.private(), true
			}
		}
		if !ok {
			e, err := s.events.get(ctx, id)
			if err != nil {
				return err
			}
			if e.rev == 0 || e.deleted {
				return nil
			}
			if r, err = decodeEvent(e.val); err != nil {
				return fmt.Errorf("event %s: %v", id, err)
			}
			rev = e.rev
		}
		ttl := fn(r)
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		nrev, err := s.events.put(ctx, id, b, &rev, ttl)
		if err == nil && r.Event.Remaining > 0 {
			// The next delivery of the event to finish here starts from
			// this record.
			s.recent.put(id, recentEvent{nrev, r}, len(b))
		}
		if !errors.Is(err, errConflict) {
			return err
		}
	}
	return fmt.Errorf("event %s: too many conflicting writes", id)
}

// countDown counts final delivery deliveryID off event id; with none
// left, the event expires after the longest retention of its deliveries
// so far. The delivery also leaves the event's list of first-written
// deliveries: it was written, so repair must never bring it back once it
// has expired.
func (s *Store) countDown(ctx context.Context, id, deliveryID string, ttl time.Duration) error {
	now := s.now()
	return s.updateEvent(ctx, id, func(r *eventRecord) time.Duration {
		r.Initial = slices.DeleteFunc(r.Initial, func(d *persist.Delivery) bool { return d.ID == deliveryID })
		ev := r.Event
		if ev.Remaining > 0 {
			ev.Remaining--
		}
		if until := now.Add(ttl).UnixNano(); until > ev.KeepUntil {
			ev.KeepUntil = until
		}
		if ev.Remaining > 0 {
			return 0
		}
		return time.Duration(ev.KeepUntil - now.UnixNano())
	})
}

// promote makes the first waiting delivery of route and key due: at
// the store's now, or its own due time if later.
func (s *Store) promote(ctx context.Context, route, key string) error {
	next, ok := s.mirror.firstWaiting(route, key)
	if !ok {
		return nil
	}
	next.Waiting = false
	if now := s.now(); next.Due.Before(now) {
		next.Due = now
	}
	return s.putDelivery(ctx, next, 0)
}

// Requeue implements persist.Store. Each delivery is requeued by its
// writer, in order with its outcomes.
func (s *Store) Requeue(ids []string, now time.Time) ([]persist.Requeued, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	type result struct {
		r   *persist.Requeued
		err error
	}
	chans := make([]chan result, len(ids))
	for i, id := range ids {
		ch := make(chan result, 1)
		chans[i] = ch
		if err := s.submit(id, func() {
			r, err := s.requeue(id, now)
			ch <- result{r, err}
		}); err != nil {
			return nil, err
		}
	}
	var out []persist.Requeued
	var firstErr error
	for _, ch := range chans {
		r := <-ch
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
		if r.r != nil {
			out = append(out, *r.r)
		}
	}
	return out, firstErr
}

func (s *Store) requeue(id string, now time.Time) (*persist.Requeued, error) {
	ctx, cancel := ctxOp()
	defer cancel()
	e, err := s.deliveries.get(ctx, id)
	if err != nil || e.rev == 0 || e.deleted {
		return nil, err
	}
	var d persist.Delivery
	rec := deliveryRecord{Delivery: &d}
	if err := json.Unmarshal(e.val, &rec); err != nil {
		return nil, fmt.Errorf("decoding delivery %s: %v", id, err)
	}
	was := d.Status
	switch d.Status {
	case persist.StatusPending:
		if d.Waiting || !d.Due.After(now) {
			return nil, nil
		}
		d.Due = now
	case persist.StatusDelivered, persist.StatusDead:
		ev, err := s.events.get(ctx, d.EventID)
		if err != nil {
			return nil, err
		}
		if ev.rev == 0 || ev.deleted {
			return nil, nil
		}
		if err := s.updateEvent(ctx, d.EventID, func(r *eventRecord) time.Duration {
			r.Event.Remaining++
			r.Event.KeepUntil = 0
			return 0
		}); err != nil {
			return nil, err
		}
		d.Status, d.Due, d.Done = persist.StatusPending, now, time.Time{}
		d.ScheduleStart, d.ScheduleBase = now, d.Attempts
		if d.OrderKey != "" {
			s.mirror.mu.RLock()
			d.Waiting = s.mirror.unfinishedOfKeyLocked(d.Route, d.OrderKey, d.ID)
			s.mirror.mu.RUnlock()
		}
		// The history stops expiring with the delivery, and takes the
		// attempt its record held, which the record written below no
		// longer does.
		if err := s.appendAttempt(ctx, id, rec.Attempt, 0); err != nil {
			return nil, err
		}
	default:
		return nil, nil
	}
	if err := s.putDelivery(ctx, &d, 0); err != nil {
		return nil, err
	}
	return &persist.Requeued{ID: id, Route: d.Route, Was: was}, nil
}

// Claim implements persist.Claimer: an atomic create of the delivery's
// key in the claims bucket, expiring after lease, kept only if the
// delivery is still pending at due (read from the stream leader, after
// every outcome recorded before the previous claim was released).
func (s *Store) Claim(id string, due time.Time, lease time.Duration) (bool, error) {
	if err := s.begin(); err != nil {
		return false, err
	}
	defer s.end()
	ctx, cancel := ctxOp()
	defer cancel()
	rev, err := s.claims.create(ctx, id, []byte(s.node), lease)
	if errors.Is(err, errConflict) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	s.mirror.applyClaim(id, s.node, rev, false)
	e, err := s.deliveries.get(ctx, id)
	ok := false
	if err == nil && e.rev != 0 && !e.deleted {
		var d persist.Delivery
		if json.Unmarshal(e.val, &d) == nil {
			ok = d.Status == persist.StatusPending && !d.Waiting && d.Due.UnixNano() == due.UnixNano()
			c := d
			s.mirror.applyDelivery(id, &c, e.rev, false)
		}
	}
	if !ok {
		s.releaseClaim(id)
	}
	return ok, err
}

// Release implements persist.Claimer.
func (s *Store) Release(id string) {
	if s.begin() != nil {
		return
	}
	defer s.end()
	s.releaseClaim(id)
}

func (s *Store) releaseClaim(id string) {
	s.mirror.mu.RLock()
	c, ok := s.mirror.claims[id]
	s.mirror.mu.RUnlock()
	if !ok || c.node != s.node {
		return
	}
	ctx, cancel := ctxOp()
	defer cancel()
	// Every node's watch sees the release at once; its marker then only
	// needs to outlive a watch that is catching up.
	if rev, err := s.claims.del(ctx, id, c.rev, markerTTL); err == nil {
		s.mirror.applyClaim(id, "", rev, true)
	}
}

// Watch implements persist.Claimer: changed is called with the route of
// every delivery another node wrote, and of every claim released or
// expired, so the engine looks at the route again.
func (s *Store) Watch(changed func(route string)) {
	s.mirror.onChange(changed)
}

// WatchRouteStates implements persist.Claimer: changed is called with
// every route state written (by any node) after the store opened.
func (s *Store) WatchRouteStates(changed func(route string, st persist.RouteState)) {
	s.mirror.changedMu.Lock()
	s.mirror.stateFns = append(s.mirror.stateFns, changed)
	s.mirror.changedMu.Unlock()
}
