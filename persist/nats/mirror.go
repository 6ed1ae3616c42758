package natsstore

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/persist"
)

// mirror is this node's copy of the deliveries and claims buckets, fed
// by watches and by the node's own acknowledged writes. A record is
// replaced only by a newer revision (stream sequence), so the watch
// replaying a write the node already applied changes nothing.
type mirror struct {
	mu sync.RWMutex
	// deliveries holds the pending and dead deliveries (delivered ones
	// are read from the server when asked for: they are many, and only
	// look-ups and listings need them).
	deliveries map[string]*mrec // by delivery id
	byRoute    map[string]map[string]*mrec
	npending   map[string]int
	ndead      map[string]int
	// byKey holds the deliveries with an order key, by route and key.
	byKey map[string]map[string]*mrec
	// ready caches each route's listable deliveries (pending, not
	// waiting) in due order. It is dropped when a delivery becomes
	// listable (new, retried, promoted, requeued); one that stops being
	// listable (delivered, dead, waiting, deleted) stays in it, stale,
	// and is skipped (liveLocked): with a large backlog, sorting again
	// after every outcome would cost more than the delivery.
	ready   map[string][]*persist.Delivery
	pruneAt int
	// gone keeps the revision of deleted deliveries until the watch has
	// passed it, so a late replay of an older write cannot revive them.
	gone    map[string]uint64
	seenDel uint64 // last revision the deliveries watch delivered

	claims     map[string]claim // by delivery id
	goneClaim  map[string]uint64
	seenClaims uint64
	seenRoutes uint64 // last revision of the route states seen

	watchMu  sync.Mutex
	watchers []jetstream.KeyWatcher
	// changed is called (outside the lock) with the route of a delivery
	// another node wrote or whose claim went away.
	changedMu sync.Mutex
	changed   []func(route string)
	stateFns  []func(route string, st persist.RouteState)
}

type mrec struct {
	d   *persist.Delivery
	rev uint64
}

type claim struct {
	node string
	rev  uint64
}

func newMirror() *mirror {
	return &mirror{
		deliveries: map[string]*mrec{},
		byRoute:    map[string]map[string]*mrec{},
		npending:   map[string]int{},
		byKey:      map[string]map[string]*mrec{},
		ndead:      map[string]int{},
		ready:      map[string][]*persist.Delivery{},
		gone:       map[string]uint64{},
		pruneAt:    1024,
		claims:     map[string]claim{},
		goneClaim:  map[string]uint64{},
	}
}

// start loads both buckets and keeps following them until wctx ends;
// it follows the route states from their current revision on.
func (m *mirror) start(ctx, wctx context.Context, s *Store, wg *sync.WaitGroup) error {
	for _, b := range []*bucket{s.deliveries, s.claims} {
		w, err := b.kv.WatchAll(wctx)
		if err != nil {
			return err
		}
		apply := m.handler(s, b)
		// The initial values end with a nil entry.
	initial:
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return errors.New("watch ended while loading")
				}
				if e == nil {
					break initial
				}
				apply(e)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		m.follow(w, apply, wg)
	}
	info, err := s.routes.stream.Info(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.seenRoutes = info.State.LastSeq
	m.mu.Unlock()
	w, err := s.routes.kv.WatchAll(wctx, jetstream.ResumeFromRevision(info.State.LastSeq+1))
	if err != nil {
		return err
	}
	m.follow(w, m.handler(s, s.routes), wg)
	return nil
}

// handler returns what applies an entry of bucket b.
func (m *mirror) handler(s *Store, b *bucket) func(jetstream.KeyValueEntry) {
	switch b {
	case s.deliveries:
		return func(e jetstream.KeyValueEntry) { m.fromWatch(e, true, s.node) }
	case s.claims:
		return func(e jetstream.KeyValueEntry) { m.fromWatch(e, false, s.node) }
	}
	return m.fromRoutes
}

// follow applies what w brings until it stops.
func (m *mirror) follow(w jetstream.KeyWatcher, apply func(jetstream.KeyValueEntry), wg *sync.WaitGroup) {
	m.watchMu.Lock()
	m.watchers = append(m.watchers, w)
	m.watchMu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for e := range w.Updates() {
			if e != nil {
				apply(e)
			}
		}
	}()
}

// rewatch replaces the watches after a reconnection, resuming after
// the last revision each delivered: the server may have restarted and
// lost the consumers behind them, which they would notice only after
// several missed heartbeats.
func (m *mirror) rewatch(wctx context.Context, s *Store, wg *sync.WaitGroup) {
	m.stopWatch()
	m.mu.RLock()
	from := map[*bucket]uint64{s.deliveries: m.seenDel + 1, s.claims: m.seenClaims + 1, s.routes: m.seenRoutes + 1}
	m.mu.RUnlock()
	for _, b := range []*bucket{s.deliveries, s.claims, s.routes} {
		for tries := 0; ; tries++ {
			w, err := b.kv.WatchAll(wctx, jetstream.ResumeFromRevision(from[b]))
			if err == nil {
				m.follow(w, m.handler(s, b), wg)
				break
			}
			if wctx.Err() != nil || tries > 100 {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// fromRoutes passes a route state written by any node to the
// callbacks.
func (m *mirror) fromRoutes(e jetstream.KeyValueEntry) {
	m.mu.Lock()
	if e.Revision() <= m.seenRoutes {
		m.mu.Unlock()
		return
	}
	m.seenRoutes = e.Revision()
	m.mu.Unlock()
	name, ok := dec(e.Key())
	if !ok {
		return
	}
	var st persist.RouteState
	if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &st) != nil {
		return
	}
	m.changedMu.Lock()
	fns := m.stateFns
	m.changedMu.Unlock()
	for _, fn := range fns {
		fn(name, st)
	}
}

func (m *mirror) stopWatch() {
	m.watchMu.Lock()
	ws := m.watchers
	m.watchers = nil
	m.watchMu.Unlock()
	for _, w := range ws {
		_ = w.Stop()
	}
}

func (m *mirror) onChange(fn func(route string)) {
	m.changedMu.Lock()
	m.changed = append(m.changed, fn)
	m.changedMu.Unlock()
}

func (m *mirror) notify(route string) {
	m.changedMu.Lock()
	fns := m.changed
	m.changedMu.Unlock()
	for _, fn := range fns {
		fn(route)
	}
}

func (m *mirror) fromWatch(e jetstream.KeyValueEntry, isDel bool, node string) {
	id, ok := dec(e.Key())
	if !ok {
		return
	}
	deleted := e.Operation() != jetstream.KeyValuePut
	if isDel {
		var d *persist.Delivery
		if !deleted {
			d = new(persist.Delivery)
			if json.Unmarshal(e.Value(), d) != nil {
				return
			}
		}
		route, changed := m.applyDelivery(id, d, e.Revision(), true)
		if changed && route != "" {
			m.notify(route)
		}
		return
	}
	var route string
	m.mu.Lock()
	if e.Revision() > m.seenClaims {
		m.seenClaims = e.Revision()
	}
	changed := m.applyClaimLocked(id, string(e.Value()), e.Revision(), deleted)
	if r, ok := m.deliveries[id]; ok && changed && deleted {
		route = r.d.Route
	}
	m.pruneLocked()
	m.mu.Unlock()
	if route != "" {
		m.notify(route)
	}
}

// applyDelivery sets (d != nil) or deletes a delivery at revision rev.
// It reports the delivery's route and whether the mirror changed. A
// delivered delivery leaves the mirror like a deleted one.
func (m *mirror) applyDelivery(id string, d *persist.Delivery, rev uint64, fromWatch bool) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if fromWatch && rev > m.seenDel {
		m.seenDel = rev
	}
	defer m.pruneLocked()
	cur, ok := m.deliveries[id]
	if ok && cur.rev >= rev {
		return "", false
	}
	if g, ok := m.gone[id]; ok && g >= rev {
		return "", false
	}
	if ok {
		m.unindexLocked(cur)
	}
	if d == nil || d.Status == persist.StatusDelivered {
		m.gone[id] = rev
		switch {
		case ok:
			return cur.d.Route, true
		case d != nil:
			return d.Route, true
		}
		return "", false
	}
	delete(m.gone, id)
	r := &mrec{d: d, rev: rev}
	m.deliveries[id] = r
	rm := m.byRoute[d.Route]
	if rm == nil {
		rm = map[string]*mrec{}
		m.byRoute[d.Route] = rm
	}
	rm[id] = r
	if d.OrderKey != "" {
		k := orderIndex(d.Route, d.OrderKey)
		km := m.byKey[k]
		if km == nil {
			km = map[string]*mrec{}
			m.byKey[k] = km
		}
		km[id] = r
	}
	switch d.Status {
	case persist.StatusPending:
		m.npending[d.Route]++
	case persist.StatusDead:
		m.ndead[d.Route]++
	}
	if d.Status == persist.StatusPending && !d.Waiting {
		delete(m.ready, d.Route)
	}
	return d.Route, true
}

func (m *mirror) unindexLocked(r *mrec) {
	route := r.d.Route
	delete(m.deliveries, r.d.ID)
	delete(m.byRoute[route], r.d.ID)
	if len(m.byRoute[route]) == 0 {
		delete(m.byRoute, route)
	}
	if r.d.OrderKey != "" {
		k := orderIndex(route, r.d.OrderKey)
		delete(m.byKey[k], r.d.ID)
		if len(m.byKey[k]) == 0 {
			delete(m.byKey, k)
		}
	}
	dec := func(c map[string]int) {
		if c[route]--; c[route] <= 0 {
			delete(c, route)
		}
	}
	switch r.d.Status {
	case persist.StatusPending:
		dec(m.npending)
	case persist.StatusDead:
		dec(m.ndead)
	}
	// The ready cache keeps r.d, stale now: liveLocked skips it.
}

// liveLocked says whether d, taken from the ready cache, is still the
// mirror's current version of its delivery. Every change replaces the
// mirror's record, never the Delivery it points to. Must hold m.mu.
func (m *mirror) liveLocked(d *persist.Delivery) bool {
	r, ok := m.deliveries[d.ID]
	return ok && r.d == d
}

// readyLocked returns route's pending, not waiting deliveries in due
// order (ties by id), sorted again only after a delivery became
// listable. It may hold stale entries, which the caller skips with
// liveLocked; leading ones are dropped here, so a draining backlog is
// not walked again and again. The caller must not modify it. Must hold
// m.mu for writing.
func (m *mirror) readyLocked(route string) []*persist.Delivery {
	if out, ok := m.ready[route]; ok {
		i := 0
		for i < len(out) && !m.liveLocked(out[i]) {
			i++
		}
		if i > 0 {
			out = out[i:]
			m.ready[route] = out
		}
		return out
	}
	out := make([]*persist.Delivery, 0, m.npending[route])
	for _, r := range m.byRoute[route] {
		if r.d.Status == persist.StatusPending && !r.d.Waiting {
			out = append(out, r.d)
		}
	}
	slices.SortFunc(out, func(a, b *persist.Delivery) int {
		if c := dueKey(a.Due).Compare(dueKey(b.Due)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	m.ready[route] = out
	return out
}

func (m *mirror) applyClaimLocked(id, node string, rev uint64, deleted bool) bool {
	cur, ok := m.claims[id]
	if ok && cur.rev >= rev {
		return false
	}
	if g, ok := m.goneClaim[id]; ok && g >= rev {
		return false
	}
	if deleted {
		delete(m.claims, id)
		m.goneClaim[id] = rev
		return ok
	}
	delete(m.goneClaim, id)
	m.claims[id] = claim{node: node, rev: rev}
	return true
}

func (m *mirror) applyClaim(id, node string, rev uint64, deleted bool) {
	m.mu.Lock()
	m.applyClaimLocked(id, node, rev, deleted)
	m.mu.Unlock()
}

// pruneLocked forgets deletions the watches have passed, once they are
// many (and then only when their number doubled since the last time).
func (m *mirror) pruneLocked() {
	if len(m.gone)+len(m.goneClaim) < m.pruneAt {
		return
	}
	for id, rev := range m.gone {
		if rev <= m.seenDel {
			delete(m.gone, id)
		}
	}
	for id, rev := range m.goneClaim {
		if rev <= m.seenClaims {
			delete(m.goneClaim, id)
		}
	}
	m.pruneAt = max(1024, 2*(len(m.gone)+len(m.goneClaim)))
}

// delivery returns a copy of the mirrored delivery id.
func (m *mirror) delivery(id string) (*persist.Delivery, bool) {
	d, _, ok := m.deliveryRev(id)
	return d, ok
}

// deliveryRev returns a copy of the mirrored delivery id and the
// revision the mirror has of it.
func (m *mirror) deliveryRev(id string) (*persist.Delivery, uint64, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.deliveries[id]
	if !ok {
		return nil, 0, false
	}
	d := *r.d
	return &d, r.rev, true
}

// claimedElsewhere says whether another node holds a claim on id.
// Must hold m.mu.
func (m *mirror) claimedElsewhereLocked(id, node string) bool {
	c, ok := m.claims[id]
	return ok && c.node != node
}

// unfinishedOfKey says whether route has a pending delivery with key,
// other than except. Must hold m.mu.
func (m *mirror) unfinishedOfKeyLocked(route, key, except string) bool {
	for id, r := range m.byKey[orderIndex(route, key)] {
		if id != except && r.d.Status == persist.StatusPending {
			return true
		}
	}
	return false
}

// firstWaiting returns the waiting delivery of route and key that comes
// first (lowest id), if any.
func (m *mirror) firstWaiting(route, key string) (*persist.Delivery, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var best *persist.Delivery
	for _, r := range m.byKey[orderIndex(route, key)] {
		d := r.d
		if d.Status == persist.StatusPending && d.Waiting && (best == nil || d.ID < best.ID) {
			best = d
		}
	}
	if best == nil {
		return nil, false
	}
	c := *best
	return &c, true
}

// orderIndex is the byKey key of route and order key.
func orderIndex(route, key string) string { return route + "\x00" + key }
