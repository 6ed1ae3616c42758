package natsstore

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/hookgate/hookgate/persist"
)

// readyChunk returns up to n of route's deliveries that Due may list
// (pending, not waiting, not claimed by another node), in due order,
// ties by id, from position *at of all, the ready cache as it was when
// the walk began (nil: start one from the first delivery due at or after
// from). It advances *at past what it looked at. A call costs what it
// returns, not the route's whole backlog: copying and filtering every
// ready delivery on each Due made a drain of 100,000 quadratic.
func (s *Store) readyChunk(route string, all []*persist.Delivery, at *int, from time.Time, n int) ([]*persist.Delivery, []*persist.Delivery) {
	m := s.mirror
	m.mu.Lock()
	defer m.mu.Unlock()
	if all == nil {
		all = m.readyLocked(route)
		if !from.IsZero() {
			*at, _ = slices.BinarySearchFunc(all, from, func(d *persist.Delivery, t time.Time) int {
				if dueKey(d.Due).Before(t) {
					return -1
				}
				return 1
			})
		}
	}
	out := make([]*persist.Delivery, 0, min(n, len(all)-*at))
	for ; *at < len(all) && len(out) < n; *at++ {
		// The cache is never modified, only replaced: stale entries of
		// the one this walk began with are skipped like the cache's own.
		if d := all[*at]; m.liveLocked(d) && !m.claimedElsewhereLocked(d.ID, s.node) {
			out = append(out, d)
		}
	}
	return out, all
}

// dueKey orders a zero due time before every real one.
func dueKey(t time.Time) time.Time {
	if t.IsZero() {
		return time.Unix(0, 0)
	}
	return t
}

// Due implements persist.Store.
func (s *Store) Due(route string, now time.Time, limit int, skip func(string) bool) ([]persist.Ref, time.Time, error) {
	refs, next, _, err := s.DueFrom(route, time.Time{}, now, limit, skip)
	return refs, next, err
}

// DueFrom implements persist.Store.
func (s *Store) DueFrom(route string, from, now time.Time, limit int, skip func(string) bool) (refs []persist.Ref, next, last time.Time, err error) {
	if err := s.begin(); err != nil {
		return nil, next, last, err
	}
	defer s.end()
	var (
		all []*persist.Delivery
		at  int
	)
	// Chunks leave room for the deliveries skip drops (those in flight
	// here), so one usually does.
	chunk := 64 + min(max(limit, 0), 1<<16)
	// Each chunk moves at forward by at least one, up to len(all).
	for more := true; more; more = at < len(all) {
		var ds []*persist.Delivery
		ds, all = s.readyChunk(route, all, &at, from, chunk)
		// readyChunk starts the walk at from: nothing before it comes.
		for _, d := range ds {
			if d.Due.After(now) || len(refs) >= limit {
				if skip == nil || !skip(d.ID) {
					next = d.Due
					return refs, next, last, nil
				}
				continue
			}
			last = d.Due
			if skip != nil && skip(d.ID) {
				continue
			}
			refs = append(refs, persist.Ref{ID: d.ID, Due: d.Due})
		}
	}
	return refs, next, last, nil
}

// Delivery implements persist.Store: from the mirror, which holds this
// node's writes at once and other nodes' as soon as the watch brings
// them.
func (s *Store) Delivery(id string) (*persist.Delivery, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	return s.delivery(id)
}

// delivery is Delivery without begin and end.
func (s *Store) delivery(id string) (*persist.Delivery, error) {
	if d, ok := s.mirror.delivery(id); ok {
		return d, nil
	}
	ctx, cancel := ctxOp()
	defer cancel()
	return s.fetchDelivery(ctx, id)
}

// fetchDelivery reads delivery id from the stream leader.
func (s *Store) fetchDelivery(ctx context.Context, id string) (*persist.Delivery, error) {
	e, err := s.deliveries.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if e.rev == 0 || e.deleted {
		return nil, persist.ErrNotFound
	}
	var d persist.Delivery
	if err := json.Unmarshal(e.val, &d); err != nil {
		return nil, fmt.Errorf("decoding delivery %s: %v", id, err)
	}
	return &d, nil
}

// scanDeliveries calls fn with every stored delivery, read from the
// server (the mirror lacks the delivered ones): a walk of the whole
// bucket, for listings that need delivered deliveries.
func (s *Store) scanDeliveries(fn func(d *persist.Delivery)) error {
	if err := connected(s.nc); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	w, err := s.deliveries.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				return nil
			}
			var d persist.Delivery
			if json.Unmarshal(e.Value(), &d) == nil {
				fn(&d)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// each calls fn with the deliveries of route (every route if empty)
// that may have status st (every status if zero): from the mirror, or
// from the server when delivered ones are asked for.
func (s *Store) each(route string, st persist.Status, fn func(d *persist.Delivery)) error {
	if st == 0 || st == persist.StatusDelivered {
		return s.scanDeliveries(func(d *persist.Delivery) {
			if route == "" || d.Route == route {
				fn(d)
			}
		})
	}
	m := s.mirror
	m.mu.RLock()
	defer m.mu.RUnlock()
	if route != "" {
		for _, r := range m.byRoute[route] {
			c := *r.d
			fn(&c)
		}
		return nil
	}
	for _, r := range m.deliveries {
		c := *r.d
		fn(&c)
	}
	return nil
}

// eventRecord is an event as stored: the event with its payload and the
// deliveries it was ingested with (see the package doc: Ingest).
type eventRecord struct {
	Event   *persist.Event      `json:"event"`
	Data    []byte              `json:"data"`
	Initial []*persist.Delivery `json:"initial,omitempty"`
}

func decodeEvent(b []byte) (*eventRecord, error) {
	var r eventRecord
	if err := json.Unmarshal(b, &r); err != nil || r.Event == nil {
		return nil, fmt.Errorf("decoding event record: %v", err)
	}
	r.Event.Data = r.Data
	return &r, nil
}

// Event implements persist.Store.
func (s *Store) Event(id string) (*persist.Event, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	return s.readEvent(id)
}

// readEvent reads event id from the stream leader and keeps a copy of
// its record for the outcome's count-down (recent). The update changes
// the copy, not the event returned; the payload and lists it leaves as
// they are.
func (s *Store) readEvent(id string) (*persist.Event, error) {
	ctx, cancel := ctxOp()
	defer cancel()
	e, err := s.events.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if e.rev == 0 || e.deleted {
		return nil, persist.ErrNotFound
	}
	r, err := decodeEvent(e.val)
	if err != nil {
		return nil, err
	}
	s.recent.put(id, recentEvent{e.rev, r.private()}, len(e.val))
	return r.Event, nil
}

// private returns a copy of r that can be changed as an outcome's
// update does (the event's counts, the list of first deliveries)
// without changing r; the payload and the rest are shared.
func (r *eventRecord) private() *eventRecord {
	c := *r
	ev := *r.Event
	c.Event = &ev
	c.Initial = slices.Clone(r.Initial)
	return &c
}

// LoadJobs implements persist.JobLoader, though not from one snapshot:
// deliveries come from the mirror (or the stream leader); an event this
// node ingested recently comes from the record it wrote, when the
// delivery was created with it, and otherwise from the stream leader,
// several at once. Its payload never changes; what outcomes change
// (Remaining, KeepUntil) may be older than stored, which JobLoader
// allows. An event kept here is not checked against the server: in the
// one case where a pending delivery outlives its event (a requeue racing
// the event's expiry), a node that ingested it recently may still send
// it rather than find it gone.
func (s *Store) LoadJobs(ids []string) ([]persist.Job, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	out := make([]persist.Job, len(ids))
	var g errgroup.Group
	g.SetLimit(loadParallel)
	for i, id := range ids {
		g.Go(func() error {
			out[i] = s.loadJob(id)
			return nil
		})
	}
	g.Wait()
	return out, nil
}

// loadParallel is how many deliveries LoadJobs reads at once: each read
// from the leader is a round trip.
const loadParallel = 16

func (s *Store) loadJob(id string) persist.Job {
	d, err := s.delivery(id)
	if err != nil {
		return persist.Job{Err: err}
	}
	if d.Status != persist.StatusPending {
		return persist.Job{Delivery: d}
	}
	if in, ok := s.ingested.get(d.EventID); ok && in.received.Equal(d.Created) {
		// Created with the event this node wrote (an id used again
		// after that event expired names another one, received at
		// another time).
		ev := *in.rec.Event
		return persist.Job{Delivery: d, Event: &ev}
	}
	ev, err := s.readEvent(d.EventID)
	return persist.Job{Delivery: d, Event: ev, Err: err}
}

// Attempts implements persist.Store.
func (s *Store) Attempts(id string) ([]persist.Attempt, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	ctx, cancel := ctxOp()
	defer cancel()
	// A delivery whose first attempt was its last holds that attempt in
	// its own record (see deliveryRecord). The record is read first: a
	// requeue moves the attempt to the history before it rewrites the
	// record, so one of the two reads finds it.
	de, err := s.deliveries.get(ctx, id)
	if err != nil {
		return nil, err
	}
	var rec struct {
		Attempt *persist.Attempt `json:"final_attempt"`
	}
	if de.rev != 0 && !de.deleted {
		if err := json.Unmarshal(de.val, &rec); err != nil {
			return nil, fmt.Errorf("decoding delivery %s: %v", id, err)
		}
	}
	e, err := s.attempts.get(ctx, id)
	if err != nil {
		return nil, err
	}
	var as []persist.Attempt
	if e.rev != 0 && !e.deleted {
		if err := json.Unmarshal(e.val, &as); err != nil {
			return nil, fmt.Errorf("decoding attempts of %s: %v", id, err)
		}
	}
	// A requeue that stopped after moving the attempt to the history,
	// but before rewriting the record, leaves it in both.
	if a := rec.Attempt; a != nil && !slices.ContainsFunc(as, func(h persist.Attempt) bool { return sameAttempt(h, *a) }) {
		// Usually the only one. Another node's, made at the same time
		// (overlapping claims), may be in the history and come after it.
		as = append(as, *a)
		slices.SortStableFunc(as, func(x, y persist.Attempt) int {
			return cmp.Or(cmp.Compare(x.N, y.N), x.Start.Compare(y.Start))
		})
	}
	return as, nil
}

// sameAttempt says whether a and b are one attempt: two nodes whose
// claims overlapped (a lease that ran out mid-attempt) may each make an
// attempt with the same number.
func sameAttempt(a, b persist.Attempt) bool { return a.N == b.N && a.Start.Equal(b.Start) }

// Pending implements persist.Store, counting from the mirror.
func (s *Store) Pending() (map[string]int, error) {
	return s.count(persist.StatusPending, nil)
}

// DeadCounts implements persist.Store. The mirror has no snapshots:
// taken is called just before counting.
func (s *Store) DeadCounts(taken func()) (map[string]int, error) {
	return s.count(persist.StatusDead, taken)
}

func (s *Store) count(st persist.Status, taken func()) (map[string]int, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	if taken != nil {
		taken()
	}
	m := s.mirror
	m.mu.RLock()
	defer m.mu.RUnlock()
	src := m.npending
	if st == persist.StatusDead {
		src = m.ndead
	}
	out := make(map[string]int, len(src))
	for route, n := range src {
		if n > 0 {
			out[route] = n
		}
	}
	return out, nil
}

// SetRouteState implements persist.Store.
func (s *Store) SetRouteState(route string, st persist.RouteState) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	ctx, cancel := ctxOp()
	defer cancel()
	if st == (persist.RouteState{}) {
		_, err := s.routes.del(ctx, route, 0, 0)
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = s.routes.put(ctx, route, b, nil, 0)
	return err
}

// RouteStates implements persist.Store.
func (s *Store) RouteStates() (map[string]persist.RouteState, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	ctx, cancel := ctxOp()
	defer cancel()
	out := map[string]persist.RouteState{}
	w, err := s.routes.kv.WatchAll(ctx)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				return out, nil
			}
			if e.Operation() != 0 { // not a put
				continue
			}
			name, ok := dec(e.Key())
			if !ok {
				continue
			}
			var st persist.RouteState
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				return nil, fmt.Errorf("decoding state of route %s: %v", name, err)
			}
			out[name] = st
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// listKey orders deliveries in a listing: pending by due time (waiting
// ones after the ready ones), final ones by when they became final,
// every state by id; with no route, by route first.
func listKey(f persist.ListFilter, d *persist.Delivery) string {
	var k string
	switch f.Status {
	case persist.StatusPending:
		if d.Waiting {
			k = "1|" + d.ID
		} else {
			k = fmt.Sprintf("0|%020d|%s", dueKey(d.Due).UnixNano(), d.ID)
		}
	case persist.StatusDead, persist.StatusDelivered:
		k = fmt.Sprintf("%020d|%s", d.Done.UnixNano(), d.ID)
	default:
		k = d.ID
	}
	if f.Route == "" && f.Status != 0 {
		k = d.Route + "\x00" + k
	}
	return k
}

type cursor struct {
	Route  string         `json:"r"`
	Status persist.Status `json:"s"`
	Key    string         `json:"k"`
}

// ListDeliveries implements persist.Store, from the mirror.
func (s *Store) ListDeliveries(f persist.ListFilter) ([]*persist.Delivery, string, error) {
	if err := s.begin(); err != nil {
		return nil, "", err
	}
	defer s.end()
	limit := f.Limit
	switch {
	case limit == 0:
		limit = persist.DefaultListLimit
	case limit < 0 || limit > persist.MaxListLimit:
		return nil, "", fmt.Errorf("%w: limit %d is not between 1 and %d", persist.ErrBadFilter, f.Limit, persist.MaxListLimit)
	}
	if f.Status != 0 && f.Status != persist.StatusPending && f.Status != persist.StatusDead && f.Status != persist.StatusDelivered {
		return nil, "", fmt.Errorf("%w: unknown status %d", persist.ErrBadFilter, f.Status)
	}
	if err := f.Check(); err != nil {
		return nil, "", err
	}
	after := ""
	if f.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		var c cursor
		if err != nil || json.Unmarshal(raw, &c) != nil || c.Route != f.Route || c.Status != f.Status || c.Key == "" {
			return nil, "", persist.ErrBadCursor
		}
		after = c.Key
	}
	type item struct {
		key string
		d   *persist.Delivery
	}
	var items []item
	err := s.each(f.Route, f.Status, func(d *persist.Delivery) {
		if f.Status != 0 && d.Status != f.Status || !f.Match(d) {
			return
		}
		k := listKey(f, d)
		if after != "" && k <= after {
			return
		}
		items = append(items, item{k, d})
	})
	if err != nil {
		return nil, "", err
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.key, b.key) })
	next := ""
	if len(items) > limit {
		items = items[:limit]
		raw, _ := json.Marshal(cursor{Route: f.Route, Status: f.Status, Key: items[limit-1].key})
		next = base64.RawURLEncoding.EncodeToString(raw)
	}
	out := make([]*persist.Delivery, len(items))
	for i, it := range items {
		out[i] = it.d
	}
	return out, next, nil
}

// ReplayIDs implements persist.Store, from the mirror.
func (s *Store) ReplayIDs(route string, status persist.Status, since, until time.Time, cur string, limit int) ([]string, string, error) {
	if status != persist.StatusDead && status != persist.StatusDelivered {
		return nil, "", fmt.Errorf("%w: only dead or delivered deliveries are replayed, not %s", persist.ErrBadFilter, status)
	}
	if route == "" {
		return nil, "", fmt.Errorf("%w: no route", persist.ErrBadFilter)
	}
	if limit <= 0 {
		return nil, "", fmt.Errorf("%w: limit %d", persist.ErrBadFilter, limit)
	}
	if err := s.begin(); err != nil {
		return nil, "", err
	}
	defer s.end()
	after := ""
	if cur != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cur)
		if err != nil {
			return nil, "", persist.ErrBadCursor
		}
		after = string(raw)
	}
	type item struct{ key, id string }
	var items []item
	err := s.each(route, status, func(d *persist.Delivery) {
		if d.Status != status || d.Done.Before(since) || (!until.IsZero() && !d.Done.Before(until)) {
			return
		}
		k := fmt.Sprintf("%020d|%s", d.Done.UnixNano(), d.ID)
		if after != "" && k <= after {
			return
		}
		items = append(items, item{k, d.ID})
	})
	if err != nil {
		return nil, "", err
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.key, b.key) })
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(items[limit-1].key))
	}
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.id
	}
	return ids, next, nil
}
