package natsstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/persist"
)

// What a backfill reads and writes: the events received in a window, and
// deliveries added to stored events.

// EventsReceived implements persist.Store. The buckets have no index by
// time, so each call reads every stored event from the server (one
// watch of the events bucket) and pages through those in the window:
// its cost follows the size of the outbox, not of the page.
func (s *Store) EventsReceived(since, until time.Time, cursor string, limit int) ([]*persist.Event, string, error) {
	if limit <= 0 || limit > persist.MaxEventsPage {
		return nil, "", fmt.Errorf("%w: limit %d is not between 1 and %d", persist.ErrBadFilter, limit, persist.MaxEventsPage)
	}
	var (
		afterNS int64 = -1
		afterID string
	)
	if cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cursor)
		ns, id, ok := strings.Cut(string(raw), ".")
		n, perr := strconv.ParseInt(ns, 10, 64)
		if err != nil || !ok || perr != nil {
			return nil, "", fmt.Errorf("%w: not one of EventsReceived's", persist.ErrBadCursor)
		}
		afterNS, afterID = n, id
	}
	if err := s.begin(); err != nil {
		return nil, "", err
	}
	defer s.end()
	if err := connected(s.nc); err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	w, err := s.events.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, "", mapErr(err)
	}
	defer w.Stop()
	var evs []*persist.Event
scan:
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				break scan
			}
			r, err := decodeEvent(e.Value())
			if err != nil {
				continue
			}
			ev := r.Event
			if ev.Received.Before(since) || (!until.IsZero() && !ev.Received.Before(until)) {
				continue
			}
			ns := ev.Received.UnixNano()
			if ns < afterNS || ns == afterNS && ev.ID <= afterID {
				continue
			}
			evs = append(evs, ev)
		case <-ctx.Done():
			return nil, "", ctx.Err()
		}
	}
	slices.SortFunc(evs, func(a, b *persist.Event) int {
		if c := a.Received.Compare(b.Received); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(evs) <= limit {
		return evs, "", nil
	}
	evs = evs[:limit]
	last := evs[limit-1]
	next := base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(last.Received.UnixNano(), 10) + "." + last.ID))
	return evs, next, nil
}

// AddDeliveries implements persist.Store. There are no transactions
// across keys: each delivery is first added to its event's record (a
// compare-and-set, which is what makes skipRouted safe against a
// concurrent add; the record lists it with the deliveries a duplicate
// ingest repairs), then written. A node that dies in between leaves the
// event counting a delivery that was never written, until a duplicate
// ingest of the event repairs it.
func (s *Store) AddDeliveries(ds []*persist.Delivery, skipRouted bool) ([]bool, error) {
	for _, d := range ds {
		if d == nil || d.ID == "" || d.Route == "" || d.EventID == "" {
			return nil, errors.New("a delivery without id, route or event")
		}
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	added := make([]bool, len(ds))
	for i, d := range ds {
		ctx, cancel := ctxOp()
		ok, err := s.addDelivery(ctx, d, skipRouted)
		cancel()
		if err != nil {
			return nil, mapErr(err)
		}
		added[i] = ok
	}
	return added, nil
}

func (s *Store) addDelivery(ctx context.Context, d *persist.Delivery, skipRouted bool) (bool, error) {
	d.Status = persist.StatusPending
	for tries := 0; tries < 100; tries++ {
		e, err := s.events.get(ctx, d.EventID)
		if err != nil {
			return false, err
		}
		if e.rev == 0 || e.deleted {
			return false, nil
		}
		var r eventRecord
		if err := json.Unmarshal(e.val, &r); err != nil || r.Event == nil {
			return false, fmt.Errorf("decoding event %s: %v", d.EventID, err)
		}
		ev := r.Event
		routed := slices.Contains(ev.Routes, d.Route)
		if skipRouted && routed {
			return false, nil
		}
		if !routed {
			ev.Routes = append(ev.Routes, d.Route)
		}
		ev.Deliveries = append(ev.Deliveries, d.ID)
		ev.Remaining++
		ev.KeepUntil = 0
		d.Waiting = false
		if d.OrderKey != "" {
			s.mirror.mu.RLock()
			d.Waiting = s.mirror.unfinishedOfKeyLocked(d.Route, d.OrderKey, d.ID)
			s.mirror.mu.RUnlock()
		}
		r.Initial = append(r.Initial, d)
		b, err := json.Marshal(r)
		if err != nil {
			return false, err
		}
		// No TTL: the event has an unfinished delivery again.
		if _, err := s.events.put(ctx, d.EventID, b, &e.rev, 0); errors.Is(err, errConflict) {
			continue
		} else if err != nil {
			return false, err
		}
		return true, s.writeDeliveries(ctx, []*persist.Delivery{d})
	}
	return false, fmt.Errorf("event %s: too many conflicting writes", d.EventID)
}
