package natsstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/hookgate/hookgate/persist"
)

// dedupeRecord is what an idempotency key holds.
type dedupeRecord struct {
	ID string `json:"id"`
	// Until is when the dedupe window ends, by the store's clock.
	Until int64 `json:"until"`
	// Wall is when the key was written, by the wall clock: a key whose
	// event is missing is taken over once staleAfter has passed.
	Wall int64 `json:"wall"`
	// Dropped marks a key whose event was not stored (no deliveries).
	Dropped bool `json:"dropped,omitempty"`
}

// Ingest implements persist.Store. See the package doc for the order of
// the writes and why a half-done ingest is never acknowledged.
func (s *Store) Ingest(ctx context.Context, batch []persist.Ingest) ([]persist.IngestResult, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	for i, in := range batch {
		if in.Event == nil || in.Event.ID == "" {
			return nil, fmt.Errorf("ingest element %d has no event (or no event id)", i)
		}
		for _, d := range in.Deliveries {
			if d == nil || d.ID == "" || d.Route == "" {
				return nil, fmt.Errorf("ingest element %d: a delivery without id or route", i)
			}
		}
	}
	if len(batch) > 0 && !s.nc.IsConnected() {
		// Fail at once rather than wait for acknowledgments that cannot
		// come: the client is told to retry.
		return nil, fmt.Errorf("%w: not connected to %s", ErrUnavailable, s.shown)
	}
	res := make([]persist.IngestResult, len(batch))
	if !independent(batch) {
		for i := range batch {
			r, err := s.ingestOne(ctx, &batch[i])
			if err != nil {
				return nil, err
			}
			res[i] = r
		}
		return res, nil
	}
	// Each element costs a few round trips to the servers, one after the
	// other: stored one by one, a batch of 1,000 took seconds. Elements
	// that cannot affect each other are stored ingestParallel at a time.
	// As in order, an element that fails fails the call (no more are
	// started), and those stored meanwhile are duplicates when the client
	// sends the batch again.
	var (
		g      errgroup.Group
		failed atomic.Bool
	)
	g.SetLimit(ingestParallel)
	for i := range batch {
		if failed.Load() {
			break
		}
		g.Go(func() (err error) {
			if failed.Load() {
				// Failed while this one waited for its turn: the call
				// fails with that error.
				return nil
			}
			defer func() {
				// In order, a panic reached the HTTP server, which
				// answers 500; here it would end the process.
				if v := recover(); v != nil {
					err = fmt.Errorf("storing batch element %d: panic: %v\n%s", i, v, debug.Stack())
				}
				if err != nil {
					failed.Store(true)
				}
			}()
			res[i], err = s.ingestOne(ctx, &batch[i])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return res, nil
}

// ingestParallel is how many elements of one batch are stored at once.
const ingestParallel = 32

// independent says whether batch's elements may be stored in any order:
// no string is used twice as an idempotency key, event id or delivery id
// (the first in the batch must win; a key that names another element's
// event is looked up in it), and no delivery has an order key (whether
// it waits depends on those stored before it).
func independent(batch []persist.Ingest) bool {
	if len(batch) < 2 {
		return false
	}
	seen := make(map[string]struct{}, 3*len(batch))
	use := func(k string) bool {
		if k == "" {
			return true
		}
		if _, ok := seen[k]; ok {
			return false
		}
		seen[k] = struct{}{}
		return true
	}
	for _, in := range batch {
		// A key that is its event's own id is counted once, as the id.
		if in.Dedupe != in.Event.ID && !use(in.Dedupe) {
			return false
		}
		if !use(in.Event.ID) {
			return false
		}
		for _, d := range in.Deliveries {
			if d.OrderKey != "" || !use(d.ID) {
				return false
			}
		}
	}
	return true
}

func (s *Store) ingestOne(ctx context.Context, in *persist.Ingest) (persist.IngestResult, error) {
	ev := in.Event
	now := s.now()
	ret := s.ret.Load()
	store := len(in.Deliveries) > 0 || in.Keep
	if in.Dedupe != "" {
		dup, id, err := s.takeKey(ctx, in.Dedupe, ev.ID, now, ret.Dedupe, !store)
		if err != nil {
			return persist.IngestResult{}, err
		}
		if dup {
			return persist.IngestResult{Duplicate: true, ID: id}, nil
		}
	}
	if !store {
		return persist.IngestResult{ID: ev.ID}, nil
	}
	ev.Remaining = len(in.Deliveries)
	// A new slice: the caller's may be shared (with another element of a
	// batch stored at the same time).
	ev.Deliveries = make([]string, 0, len(in.Deliveries))
	for _, d := range in.Deliveries {
		ev.Deliveries = append(ev.Deliveries, d.ID)
	}
	var ttl time.Duration
	if ev.Remaining == 0 {
		ev.KeepUntil = now.Add(ret.Delivered).UnixNano()
		ttl = ret.Delivered
	}
	// Waiting behind an unfinished delivery of the same order key.
	s.mirror.mu.RLock()
	for j, d := range in.Deliveries {
		d.Status = persist.StatusPending
		d.Waiting = false
		if d.OrderKey == "" {
			continue
		}
		if s.mirror.unfinishedOfKeyLocked(d.Route, d.OrderKey, d.ID) {
			d.Waiting = true
			continue
		}
		for _, e := range in.Deliveries[:j] {
			if e.Route == d.Route && e.OrderKey == d.OrderKey {
				d.Waiting = true
				break
			}
		}
	}
	s.mirror.mu.RUnlock()
	rec, err := json.Marshal(eventRecord{Event: ev, Data: ev.Data, Initial: in.Deliveries})
	if err != nil {
		return persist.IngestResult{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	rev, err := s.events.create(cctx, ev.ID, rec, ttl)
	if errors.Is(err, errConflict) {
		// Still held: a duplicate, whatever the window says. Make sure
		// it is whole (its node may have died half-way).
		if err := s.repair(cctx, ev.ID); err != nil {
			return persist.IngestResult{}, err
		}
		return persist.IngestResult{Duplicate: true, ID: ev.ID}, nil
	} else if err != nil {
		return persist.IngestResult{}, err
	}
	if len(in.Deliveries) > 0 {
		// The record as written, kept apart from what the caller holds
		// and may change: the event and deliveries are copied, and the
		// payload too, which may be a slice of a much larger request
		// body that the cache's bound would not count.
		data := bytes.Clone(ev.Data)
		kept := eventRecord{Event: new(persist.Event), Data: data, Initial: make([]*persist.Delivery, len(in.Deliveries))}
		*kept.Event = *ev
		kept.Event.Data = data
		kept.Event.Deliveries = slices.Clone(ev.Deliveries)
		for i, d := range in.Deliveries {
			c := *d
			kept.Initial[i] = &c
		}
		s.ingested.put(ev.ID, ingestedEvent{&kept, rev, ev.Received}, len(rec))
	}
	if err := s.writeDeliveries(cctx, in.Deliveries); err != nil {
		return persist.IngestResult{}, err
	}
	return persist.IngestResult{ID: ev.ID}, nil
}

// writeDeliveries writes new delivery records, all published before
// any acknowledgment is awaited, and applies them to the mirror. A
// record already written (by a repair racing the ingest) is left as it
// is.
func (s *Store) writeDeliveries(ctx context.Context, ds []*persist.Delivery) error {
	futs := make([]jetstream.PubAckFuture, len(ds))
	for i, d := range ds {
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		if futs[i], err = s.deliveries.createAsync(d.ID, b); err != nil {
			return mapErr(err)
		}
	}
	for i, f := range futs {
		select {
		case ack := <-f.Ok():
			c := *ds[i]
			s.mirror.applyDelivery(c.ID, &c, ack.Sequence, false)
		case err := <-f.Err():
			if !isWrongLast(err) {
				return mapErr(err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// takeKey claims the idempotency key for id, or reports the id of the
// event that holds it.
func (s *Store) takeKey(ctx context.Context, key, id string, now time.Time, window time.Duration, dropped bool) (dup bool, holder string, err error) {
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	val, _ := json.Marshal(dedupeRecord{ID: id, Until: now.Add(window).UnixNano(), Wall: time.Now().UnixNano(), Dropped: dropped})
	// The server forgets the key a little after the window (wall clock).
	ttl := window + time.Minute
	// Most keys are new: try to create the key first, and read it only
	// if it exists.
	zero := uint64(0)
	if _, err := s.dedupe.put(cctx, key, val, &zero, ttl); !errors.Is(err, errConflict) {
		return false, "", err
	}
	for tries := 0; ; tries++ {
		if tries > 200 {
			return false, "", fmt.Errorf("idempotency key %q: gave up after %d conflicting writes", key, tries)
		}
		e, err := s.dedupe.get(cctx, key)
		if err != nil {
			return false, "", err
		}
		if e.rev == 0 || e.deleted {
			_, err := s.dedupe.put(cctx, key, val, &e.rev, ttl)
			if errors.Is(err, errConflict) {
				continue
			}
			return false, "", err
		}
		var cur dedupeRecord
		if err := json.Unmarshal(e.val, &cur); err != nil {
			return false, "", fmt.Errorf("decoding idempotency key %q: %v", key, err)
		}
		if now.UnixNano() < cur.Until {
			if cur.Dropped {
				return true, cur.ID, nil
			}
			// Live: a duplicate of cur.ID if that event is stored (or
			// being stored by another node right now).
			ev, err := s.events.get(cctx, cur.ID)
			if err != nil {
				return false, "", err
			}
			if ev.rev != 0 && !ev.deleted {
				if err := s.repair(cctx, cur.ID); err != nil {
					return false, "", err
				}
				return true, cur.ID, nil
			}
			if time.Since(time.Unix(0, cur.Wall)) < staleAfter {
				// Another ingest holds the key and is writing its event.
				select {
				case <-time.After(20 * time.Millisecond):
				case <-cctx.Done():
					return false, "", cctx.Err()
				}
				continue
			}
			// Its node died before storing the event: take the key over.
		}
		_, err = s.dedupe.put(cctx, key, val, &e.rev, ttl)
		if errors.Is(err, errConflict) {
			continue
		}
		return false, "", err
	}
}

// repair writes the deliveries an event record lists that are missing,
// as first ingested: what an ingest cut short left undone.
func (s *Store) repair(ctx context.Context, id string) error {
	e, err := s.events.get(ctx, id)
	if err != nil || e.rev == 0 || e.deleted {
		return err
	}
	r, err := decodeEvent(e.val)
	if err != nil {
		return err
	}
	var missing []*persist.Delivery
	for _, d := range r.Initial {
		if _, ok := s.mirror.delivery(d.ID); ok {
			continue
		}
		de, err := s.deliveries.get(ctx, d.ID)
		if err != nil {
			return err
		}
		if de.rev == 0 {
			missing = append(missing, d)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return s.writeDeliveries(ctx, missing)
}
