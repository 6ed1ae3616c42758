package persist

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// This file is the operator's view of the outbox: listing deliveries,
// selecting them for replay and putting them back in the ready index.
//
// Pending deliveries are listed from the ready index (q|, in due order)
// followed by those waiting in the order index (o|) behind an earlier
// delivery of their order key, dead ones from the dead index (x|, in the
// order they died) and delivered ones from the delivered index (v|, in
// the order they were delivered), each per route, so a page costs what
// it returns rather than the size of the outbox. The delivered index is one empty key per
// delivered delivery with the delivery's own TTL: it costs a few bytes
// per outcome and saves scanning every record to list or replay
// delivered deliveries. A listing of every state has no index to use and
// walks the delivery records in id (creation) order, at most
// maxListScan of them per page.

// Listing limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
	// maxListScan bounds the records a listing of every state reads per
	// page; a page may then hold fewer than its limit and still have a
	// next cursor.
	maxListScan = 50_000
	// requeueChunk is how many deliveries one committer unit requeues:
	// small enough for a transaction even when every one rewrites a
	// large event, and short enough not to hold up outcomes.
	requeueChunk = 128
)

// Errors of the listing calls, for the caller to map to a client error.
var (
	// ErrBadCursor is returned for a cursor that this store did not hand
	// out, or handed out for another listing (route or status).
	ErrBadCursor = errors.New("invalid cursor")
	// ErrBadFilter is returned for a limit or status out of range.
	ErrBadFilter = errors.New("invalid filter")
)

// ListFilter selects the deliveries ListDeliveries returns.
type ListFilter struct {
	// Route limits the listing to one route; empty lists every route,
	// one after the other in name order.
	Route string
	// Status limits it to one state; zero lists every state, in
	// delivery id (creation) order.
	Status Status
	// Limit is the page size: default DefaultListLimit, at most
	// MaxListLimit.
	Limit int
	// Cursor continues a listing: the next value of the previous page,
	// with the same Route, Status, Type, Since and Until (the filter must
	// be repeated unchanged). Empty starts at the beginning.
	Cursor string
	// Type keeps only deliveries of this event type (exact match); empty
	// keeps every type. Deliveries stored before event types were
	// recorded have none and match no type filter. Non-matching entries
	// are skipped while paging, at most maxListScan per page, so a page
	// may hold fewer than Limit and still have a next cursor.
	Type string
	// Since and Until keep deliveries whose listing time is in the
	// half-open window [Since, Until); a zero time leaves that end open.
	// The listing time is the due time for pending deliveries, the time
	// they became final for delivered and dead ones, and the creation
	// time when every state is listed.
	Since, Until time.Time
}

// Check reports ErrBadFilter for a window that ends before it starts.
func (f ListFilter) Check() error {
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return fmt.Errorf("%w: until %s is before since %s", ErrBadFilter, f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	return nil
}

// ListTime returns the time of d that the window of a listing of status
// compares: Due for pending, Done for delivered and dead, Created when
// every state (status 0) is listed.
func ListTime(status Status, d *Delivery) time.Time {
	switch status {
	case StatusPending:
		return d.Due
	case StatusDead, StatusDelivered:
		return d.Done
	}
	return d.Created
}

// Match reports whether d passes the Type and the window of f (not its
// Route or Status).
func (f ListFilter) Match(d *Delivery) bool {
	if f.Type != "" && d.EventType != f.Type {
		return false
	}
	return f.inWindow(ListTime(f.Status, d))
}

func (f ListFilter) inWindow(t time.Time) bool {
	if !f.Since.IsZero() && t.Before(f.Since) {
		return false
	}
	return f.Until.IsZero() || t.Before(f.Until)
}

// Requeued is one delivery that Requeue put back in the ready index.
type Requeued struct {
	ID    string
	Route string
	// Was is its status before. A delivery that was final (delivered or
	// dead) counts as pending again; one that was pending only moved.
	Was Status
}

// indexFor returns the prefix byte of the index that lists status.
func indexFor(st Status) (byte, bool) {
	switch st {
	case StatusPending:
		return pReady, true
	case StatusDead:
		return pDead, true
	case StatusDelivered:
		return pDone, true
	}
	return 0, false
}

// Cursors are opaque to callers: a version byte, the status byte and the
// key of the last entry returned, base64url-encoded. The next page seeks
// just past that key, so entries added or removed meanwhile neither
// repeat nor shift the page.
const cursorV1 = 1

func encodeCursor(st Status, key []byte) string {
	b := make([]byte, 0, 2+len(key))
	b = append(b, cursorV1, byte(st))
	return base64.RawURLEncoding.EncodeToString(append(b, key...))
}

// decodeCursor returns the key a cursor continues after; nil for "".
func decodeCursor(c string, st Status, route string) ([]byte, error) {
	if c == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 4 || b[0] != cursorV1 || Status(b[1]) != st {
		return nil, ErrBadCursor
	}
	key := b[2:]
	if st == 0 {
		if key[0] != pDelivery || key[1] != '|' {
			return nil, ErrBadCursor
		}
		return key, nil
	}
	p, _ := indexFor(st)
	ok := key[0] == p && key[1] == '|'
	if ok {
		_, _, _, ok = parseTimedKey(key)
	} else if st == StatusPending && key[0] == pOrder && key[1] == '|' {
		_, ok = orderKeyID(key)
	}
	if !ok || route != "" && keyRoute(key) != route {
		return nil, ErrBadCursor
	}
	return key, nil
}

// after returns the smallest key greater than k.
func after(k []byte) []byte {
	return append(append(make([]byte, 0, len(k)+1), k...), 0)
}

// prefixEnd returns the smallest key greater than every key starting
// with p, or nil if there is none.
func prefixEnd(p []byte) []byte {
	end := slices.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// ListDeliveries returns a page of deliveries matching f and the cursor
// of the next page ("" when this is the last).
func (s *Badger) ListDeliveries(f ListFilter) ([]*Delivery, string, error) {
	limit := f.Limit
	switch {
	case limit == 0:
		limit = DefaultListLimit
	case limit < 0 || limit > MaxListLimit:
		return nil, "", fmt.Errorf("%w: limit %d is not between 1 and %d", ErrBadFilter, f.Limit, MaxListLimit)
	}
	if f.Status != 0 {
		if _, ok := indexFor(f.Status); !ok {
			return nil, "", fmt.Errorf("%w: unknown status %d", ErrBadFilter, f.Status)
		}
	}
	if err := checkRoute(f.Route); err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrBadFilter, err)
	}
	if err := f.Check(); err != nil {
		return nil, "", err
	}
	from, err := decodeCursor(f.Cursor, f.Status, f.Route)
	if err != nil {
		return nil, "", err
	}
	if !s.beginRead() {
		return nil, "", ErrClosed
	}
	defer s.reads.Done()
	var (
		out  []*Delivery
		next []byte
	)
	err = s.db.View(func(txn *badger.Txn) error {
		var err error
		if f.Status == 0 {
			out, next, err = listRecords(txn, f, from, limit)
		} else {
			out, next, err = listIndexed(txn, f, from, limit)
		}
		return err
	})
	if errors.Is(err, badger.ErrDBClosed) {
		err = ErrClosed
	}
	if err != nil || next == nil {
		return out, "", err
	}
	return out, encodeCursor(f.Status, next), nil
}

// listIndexed pages through the index of status, for one route or for
// every route in name order, starting after the key from. Pending
// deliveries are those in the ready index, in due order, then those of
// the route waiting behind an earlier delivery of their order key (not in
// the ready index; see ordered.go), by key and in ingest order. In the
// time-ordered indexes it seeks to f.Since and stops at f.Until; the
// waiting ones and f.Type are checked on the record. At most
// maxListScan entries are examined per page.
func listIndexed(txn *badger.Txn, f ListFilter, from []byte, limit int) ([]*Delivery, []byte, error) {
	st, route := f.Status, f.Route
	p, _ := indexFor(st)
	phases := []byte{p}
	if st == StatusPending {
		phases = append(phases, pOrder)
	}
	routes := []string{route}
	if route == "" {
		routes = indexRoutes(txn, phases...)
	}
	startRoute := ""
	if from != nil {
		startRoute = keyRoute(from)
	}
	var (
		out     []*Delivery
		last    []byte
		scanned int
	)
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	for _, r := range routes {
		if from != nil && r < startRoute {
			continue
		}
		for _, ph := range phases {
			prefix := routePrefix(ph, r)
			seek := prefix
			if ph != pOrder && !f.Since.IsZero() {
				seek = timedKey(ph, r, f.Since, "")
			}
			if from != nil && r == startRoute {
				switch {
				case from[0] == ph:
					if a := after(from); string(a) > string(seek) {
						seek = a
					}
				case from[0] == pOrder:
					continue // the cursor is past this phase
				}
			}
			opts.Prefix = prefix
			it := txn.NewIterator(opts)
			for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
				item := it.Item()
				k := item.Key()
				var id string
				if ph == pOrder {
					var waiting bool
					if err := item.Value(func(v []byte) error { waiting = isWaiting(v); return nil }); err != nil {
						it.Close()
						return nil, nil, err
					}
					if !waiting {
						continue // the active one is in the ready index
					}
					var ok bool
					if id, ok = orderKeyID(k); !ok {
						continue
					}
				} else {
					var (
						ok bool
						at time.Time
					)
					if _, at, id, ok = parseTimedKey(k); !ok {
						continue
					}
					if !f.Until.IsZero() && !at.Before(f.Until) {
						break // the rest of this route's index is later
					}
				}
				if len(out) == limit || scanned == maxListScan {
					// There is more: the next page starts after the
					// last entry this one examined.
					it.Close()
					return out, last, nil
				}
				scanned++
				last = append(last[:0], k...)
				d, err := txnDelivery(txn, id)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					it.Close()
					return nil, nil, err
				}
				if !f.Match(d) {
					continue
				}
				out = append(out, d)
			}
			it.Close()
		}
	}
	return out, nil, nil
}

// keyRoute returns the route of a key made by routePrefix.
func keyRoute(k []byte) string {
	if len(k) < 3 || len(k) < 3+int(k[2]) {
		return ""
	}
	return string(k[3 : 3+int(k[2])])
}

// orderKeyID returns the delivery id of an order-index key
// (o|len route len16 key id).
func orderKeyID(k []byte) (string, bool) {
	if len(k) < 3 {
		return "", false
	}
	i := 3 + int(k[2])
	if len(k) < i+2 {
		return "", false
	}
	i += 2 + int(binary.BigEndian.Uint16(k[i:]))
	if len(k) <= i {
		return "", false
	}
	return string(k[i:]), true
}

// indexRoutes returns the routes with entries in the indexes with prefix
// bytes ps, in name order. It jumps from one route's range to the next,
// so it costs a seek per route rather than a step per entry.
func indexRoutes(txn *badger.Txn, ps ...byte) []string {
	seen := make(map[string]bool)
	var routes []string
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	for _, p := range ps {
		prefix := []byte{p, '|'}
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		for it.Seek(prefix); it.ValidForPrefix(prefix); {
			r := keyRoute(it.Item().Key())
			if !seen[r] {
				seen[r] = true
				routes = append(routes, r)
			}
			end := prefixEnd(routePrefix(p, r))
			if end == nil {
				break
			}
			it.Seek(end)
		}
		it.Close()
	}
	slices.Sort(routes)
	return routes
}

// listRecords pages through the delivery records in id order, keeping
// those of f.Route (every route when empty) that match f's type and
// creation-time window.
func listRecords(txn *badger.Txn, f ListFilter, from []byte, limit int) ([]*Delivery, []byte, error) {
	route := f.Route
	prefix := []byte{pDelivery, '|'}
	seek := prefix
	if from != nil {
		seek = after(from)
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	it := txn.NewIterator(opts)
	defer it.Close()
	var (
		out  []*Delivery
		last []byte
	)
	scanned := 0
	for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
		if len(out) == limit || scanned == maxListScan {
			return out, last, nil
		}
		scanned++
		item := it.Item()
		last = append(last[:0], item.Key()...)
		var d Delivery
		if err := item.Value(func(v []byte) error { return decodeDelivery(v, &d) }); err != nil {
			return nil, nil, fmt.Errorf("delivery %s: %w", item.Key()[2:], err)
		}
		if (route == "" || d.Route == route) && f.Match(&d) {
			out = append(out, &d)
		}
	}
	return out, nil, nil
}

// ReplayIDs returns the ids of up to limit of route's deliveries in
// status (StatusDead or StatusDelivered) that became final at or after
// since and before until (a zero time leaves that end open), in the
// order they became final, starting after cursor (empty: from the first).
// It reads only the index, not the records. next continues the selection
// ("" when there is no more); requeueing the ids first does not disturb
// it.
func (s *Badger) ReplayIDs(route string, status Status, since, until time.Time, cursor string, limit int) (ids []string, next string, err error) {
	if status != StatusDead && status != StatusDelivered {
		return nil, "", fmt.Errorf("%w: only dead or delivered deliveries are replayed, not %s", ErrBadFilter, status)
	}
	if route == "" {
		return nil, "", fmt.Errorf("%w: no route", ErrBadFilter)
	}
	if err := checkRoute(route); err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrBadFilter, err)
	}
	if limit <= 0 {
		return nil, "", fmt.Errorf("%w: limit %d", ErrBadFilter, limit)
	}
	from, err := decodeCursor(cursor, status, route)
	if err != nil {
		return nil, "", err
	}
	if !s.beginRead() {
		return nil, "", ErrClosed
	}
	defer s.reads.Done()
	p, _ := indexFor(status)
	var last []byte
	err = s.db.View(func(txn *badger.Txn) error {
		prefix := routePrefix(p, route)
		seek := timedKey(p, route, since, "")
		if from != nil && string(after(from)) > string(seek) {
			seek = after(from)
		}
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			_, at, id, ok := parseTimedKey(k)
			if !ok {
				continue
			}
			if !until.IsZero() && !at.Before(until) {
				break
			}
			if len(ids) == limit {
				next = encodeCursor(status, last)
				break
			}
			ids = append(ids, id)
			last = append(last[:0], k...)
		}
		return nil
	})
	if errors.Is(err, badger.ErrDBClosed) {
		err = ErrClosed
	}
	if err != nil {
		return nil, "", err
	}
	return ids, next, nil
}

// Requeue puts deliveries back in the ready index, due at now. A final
// (dead or delivered) delivery becomes pending again: its index entry
// and expiry go, its event counts it as unfinished again and loses its
// expiry, and its attempt count and history carry on (the next attempt
// is numbered after the last) while its retry schedule starts again
// (ScheduleStart, ScheduleBase). Earlier attempt records keep the expiry
// they got when the delivery became final, at least the retention from
// then, and get a new one when it is final again. A final delivery with
// an OrderKey rejoins its key's sequence and may wait there (see
// ordered.go). A pending delivery due later is moved to now; one already
// due, or waiting behind its order key, is left alone. Unknown ids, and
// final deliveries whose event has expired, are skipped.
//
// The writes go through the committer, ordered with outcomes, in
// chunks: on an error the deliveries of the chunks committed before it
// are returned with it.
func (s *Badger) Requeue(ids []string, now time.Time) ([]Requeued, error) {
	var chunks []*requeueBatch
	for start := 0; start < len(ids); start += requeueChunk {
		chunks = append(chunks, s.submitRequeue(ids[start:min(start+requeueChunk, len(ids))], now))
	}
	var (
		out      []Requeued
		firstErr error
	)
	for _, c := range chunks {
		res, err := s.waitRequeue(c)
		out = append(out, res...)
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return out, firstErr
}

// requeueBatch is one committer unit of a Requeue.
type requeueBatch struct {
	ids  []string
	res  []Requeued
	err  error
	done chan struct{}
}

func (s *Badger) submitRequeue(ids []string, now time.Time) *requeueBatch {
	c := &requeueBatch{ids: ids, done: make(chan struct{})}
	req := recordReq{
		apply: func(txn *badger.Txn) error {
			var err error
			c.res, err = s.applyRequeue(txn, ids, now)
			return err
		},
		done: func(err error) {
			c.err = err
			close(c.done)
		},
		size: len(ids) * 2048,
	}
	if !s.submit(req) {
		c.err = ErrClosed
		close(c.done)
	}
	return c
}

// waitRequeue waits for a chunk. Chunks do not grow with event sizes:
// big values go to Badger's value log and count only as pointers
// against its transaction limit.
func (s *Badger) waitRequeue(c *requeueBatch) ([]Requeued, error) {
	<-c.done
	if c.err != nil {
		return nil, c.err
	}
	return c.res, nil
}

// submit hands r to the committer unless Close has begun.
func (s *Badger) submit(r recordReq) bool {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return false
	}
	s.recordCh <- r
	return true
}

func (s *Badger) applyRequeue(txn *badger.Txn, ids []string, now time.Time) ([]Requeued, error) {
	var out []Requeued
	for _, id := range ids {
		d, err := txnDelivery(txn, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := checkRoute(d.Route); err != nil {
			return nil, fmt.Errorf("delivery %s: %w", id, err)
		}
		was := d.Status
		switch was {
		case StatusPending:
			// One waiting behind an earlier delivery of its order key
			// stays there: it is sent when that one is final.
			if d.Due.After(now) && !d.Waiting {
				if err := txn.Delete(readyKey(d.Route, d.Due, id)); err != nil {
					return nil, err
				}
				d.Due = now
				if err := s.putDelivery(txn, d, 0); err != nil {
					return nil, err
				}
				if err := txn.Set(readyKey(d.Route, now, id), nil); err != nil {
					return nil, err
				}
				s.moved[id] = now
			}
		case StatusDead, StatusDelivered:
			ok, err := s.reopenEvent(txn, d.EventID)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			index := deadKey(d.Route, d.Done, id)
			if was == StatusDelivered {
				index = doneKey(d.Route, d.Done, id)
			}
			if err := txn.Delete(index); err != nil {
				return nil, err
			}
			if a := d.attempt; a != nil {
				// Kept in the final record, the attempt joins the history
				// the next ones follow.
				if err := s.putAttempt(txn, id, a, 0); err != nil {
					return nil, err
				}
				d.attempt = nil
			}
			d.Status, d.Due, d.Done = StatusPending, now, time.Time{}
			// Its retry schedule starts again from here.
			d.ScheduleStart, d.ScheduleBase = now, d.Attempts
			// An ordered delivery goes back in its key's sequence, after
			// the one now active: it may have to wait its turn.
			if err := s.orderEnter(txn, d); err != nil {
				return nil, err
			}
			if err := s.putDelivery(txn, d, 0); err != nil {
				return nil, err
			}
			if !d.Waiting {
				if err := txn.Set(readyKey(d.Route, now, id), nil); err != nil {
					return nil, err
				}
			}
		default:
			continue
		}
		out = append(out, Requeued{ID: id, Route: d.Route, Was: was})
	}
	return out, nil
}

// reopenEvent counts one more of the event's deliveries as unfinished
// and drops the event's expiry. It reports false if the event is gone.
func (s *Badger) reopenEvent(txn *badger.Txn, eventID string) (bool, error) {
	se, err := lookupEvent(txn, eventID)
	if se == nil || err != nil {
		return false, err
	}
	se.st.remaining++
	return true, se.reopen(s, txn)
}

// Compact makes expired and deleted records give their disk space back
// now rather than as Badger compacts on its own: it deletes the events
// whose expiry has come (as the sweeper does every second), flushes the
// memtables, compacts the whole LSM tree into its last level (which
// drops them and tells the value log what is garbage) and then runs
// value-log GC until it finds nothing to reclaim.
//
// It is for tests and maintenance, not for a busy outbox: commits wait
// while the memtables are flushed, and the compaction competes with
// everything else for the disk.
func (s *Badger) Compact() error {
	// Expired events go by the sweeper, not by a TTL: sweep them first.
	if err := s.sweep(); err != nil {
		return fmt.Errorf("deleting expired events: %w", err)
	}
	if !s.beginRead() {
		return ErrClosed
	}
	defer s.reads.Done()
	if err := s.flattenAll(); err != nil {
		return err
	}
	for rejected := 0; ; {
		err := s.runValueLogGC(0.01)
		switch {
		case errors.Is(err, badger.ErrNoRewrite):
			return nil
		case errors.Is(err, badger.ErrRejected) && rejected < 50:
			// The GC ticker's run is in progress; only one runs at a time.
			rejected++
			time.Sleep(100 * time.Millisecond)
		case err != nil:
			return fmt.Errorf("value-log GC: %w", err)
		}
	}
}

// flattenAll writes the memtables out and compacts the whole LSM tree
// into its last level, which drops expired and deleted records and tells
// the value log what is garbage.
func (s *Badger) flattenAll() error {
	// Badger has no call to flush the memtables, nor to compact its last
	// level onto itself. DropPrefix flushes them; the two deletion
	// markers, below and above every record, make the flushed table span
	// the whole key range, so Flatten's compaction of it into the last
	// level rewrites every table there, and the markers go with it.
	//
	// One pass has been seen, rarely, to leave some expired records
	// behind (a compaction keeps versions a transaction might still
	// read), so it runs twice; the second pass is cheap.
	low, high, drop := []byte{0x00, '~'}, []byte{0xfe, '~'}, []byte{0xff, '~'}
	for pass := 0; pass < 2; pass++ {
		if err := s.flushMemtables(low, high, drop); err != nil {
			return err
		}
		if err := s.db.Flatten(2); err != nil {
			return fmt.Errorf("flattening the outbox: %w", err)
		}
	}
	return nil
}

// flushMemtables writes the markers and flushes the memtables (see
// flattenAll), with the committer held off: Badger refuses writes
// meanwhile, and an ingest or outcome would fail.
func (s *Badger) flushMemtables(low, high, drop []byte) error {
	s.flushGate.Lock()
	defer s.flushGate.Unlock()
	err := s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Delete(low); err != nil {
			return err
		}
		if err := txn.Delete(high); err != nil {
			return err
		}
		return txn.Set(drop, nil)
	})
	if err != nil {
		return fmt.Errorf("marking the key range: %w", err)
	}
	if err := s.db.DropPrefix(drop); err != nil {
		return fmt.Errorf("flushing the memtables: %w", err)
	}
	return nil
}
