package persist

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// t0 is a fixed base time for due times; tests pass "now" to Due
// explicitly, so they never depend on the wall clock.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// wait bounds every blocking call a test makes, so a hang fails the test
// instead of eating the suite's timeout.
const wait = 20 * time.Second

func openStore(t testing.TB, opts Options) *Badger {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.Dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newEvent(id string, data string) *Event {
	return &Event{
		ID:       id,
		Type:     "test.event",
		Source:   "tests",
		Time:     t0,
		Received: t0,
		Data:     []byte(data),
	}
}

func newDelivery(id, eventID, route string, due time.Time) *Delivery {
	return &Delivery{
		ID:      id,
		EventID: eventID,
		Route:   route,
		Status:  StatusPending,
		Created: t0,
		Due:     due,
	}
}

// oneIngest is an event with one delivery per route, all due at due.
// Delivery ids are eventID + "/" + route.
func oneIngest(eventID string, due time.Time, routes ...string) Ingest {
	in := Ingest{Event: newEvent(eventID, `{"n":1}`)}
	for _, r := range routes {
		in.Deliveries = append(in.Deliveries, newDelivery(eventID+"/"+r, eventID, r, due))
	}
	in.Event.Routes = routes
	return in
}

func ingest(t testing.TB, s Store, batch ...Ingest) []IngestResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, err := s.Ingest(ctx, batch)
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	if len(res) != len(batch) {
		t.Fatalf("Ingest returned %d results for %d ingests", len(res), len(batch))
	}
	return res
}

// record writes o and waits for its done callback, failing unless it is
// called exactly once and with nil.
func record(t testing.TB, s *Badger, o Outcome) {
	t.Helper()
	if err := recordErr(t, s, o); err != nil {
		t.Fatalf("Record(%s): done(%v), want done(nil)", o.Delivery.ID, err)
	}
}

// recordErr records o and returns what done was called with, after
// checking it was called exactly once.
func recordErr(t testing.TB, s *Badger, o Outcome) error {
	t.Helper()
	var calls atomic.Int32
	got := make(chan error, 4)
	s.Record(o, func(err error) {
		calls.Add(1)
		got <- err
	})
	var err error
	select {
	case err = <-got:
	case <-time.After(wait):
		t.Fatalf("Record: done not called within %v", wait)
	}
	// Any second call would come from the same commit group; a later
	// submission is committed in a later group, so once it has returned
	// every call of the first group has been made.
	barrier(t, s)
	if n := calls.Load(); n != 1 {
		t.Fatalf("Record: done called %d times, want exactly once", n)
	}
	return err
}

// barrier waits until everything submitted before it has been committed.
// A closed store has nothing in flight.
func barrier(t testing.TB, s *Badger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := s.Ingest(ctx, nil)
	if err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("barrier ingest: %v", err)
	}
}

func mustDelivery(t testing.TB, s Store, id string) *Delivery {
	t.Helper()
	d, err := s.Delivery(id)
	if err != nil {
		t.Fatalf("Delivery(%q): %v", id, err)
	}
	return d
}

func mustEvent(t testing.TB, s Store, id string) *Event {
	t.Helper()
	ev, err := s.Event(id)
	if err != nil {
		t.Fatalf("Event(%q): %v", id, err)
	}
	return ev
}

func mustPending(t testing.TB, s Store) map[string]int {
	t.Helper()
	p, err := s.Pending()
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	return p
}

func wantPending(t testing.TB, s Store, want map[string]int) {
	t.Helper()
	got := mustPending(t, s)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Pending() = %v, want %v", got, want)
	}
}

func mustDue(t testing.TB, s Store, route string, now time.Time, limit int, skip func(string) bool) ([]Ref, time.Time) {
	t.Helper()
	refs, next, err := s.Due(route, now, limit, skip)
	if err != nil {
		t.Fatalf("Due(%q): %v", route, err)
	}
	return refs, next
}

// wantDue checks Due's refs (ids and due times, in order) and next.
func wantDue(t testing.TB, s Store, route string, now time.Time, limit int, skip func(string) bool, want []Ref, wantNext time.Time) {
	t.Helper()
	refs, next := mustDue(t, s, route, now, limit, skip)
	if !refsEqual(refs, want) {
		t.Errorf("Due(%q, now=%s, limit=%d) refs = %s, want %s", route, now.Format(time.RFC3339Nano), limit, fmtRefs(refs), fmtRefs(want))
	}
	if !next.Equal(wantNext) {
		t.Errorf("Due(%q, now=%s, limit=%d) next = %s, want %s", route, now.Format(time.RFC3339Nano), limit, fmtTime(next), fmtTime(wantNext))
	}
}

func refsEqual(a, b []Ref) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID || !a[i].Due.Equal(b[i].Due) {
			return false
		}
	}
	return true
}

func fmtRefs(rs []Ref) string {
	s := "["
	for i, r := range rs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s@%s", r.ID, fmtTime(r.Due))
	}
	return s + "]"
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func attemptNs(as []Attempt) []int {
	ns := make([]int, len(as))
	for i, a := range as {
		ns[i] = a.N
	}
	return ns
}

func sortedKeys(m map[string]bool) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ---- helpers that read Badger directly ----

func expiresAt(t testing.TB, s *Badger, key []byte) uint64 {
	t.Helper()
	var exp uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		exp = item.ExpiresAt()
		return nil
	})
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return exp
}

// wantTTL checks key expires after about ttl from now (Badger stores unix
// seconds computed from the wall clock).
func wantTTL(t testing.TB, s *Badger, key []byte, ttl time.Duration) {
	t.Helper()
	exp := int64(expiresAt(t, s, key))
	want := time.Now().Add(ttl).Unix()
	if exp < want-30 || exp > want+1 {
		t.Fatalf("key %q expires at %d, want about %d (now + %v)", key, exp, want, ttl)
	}
}

// eventExpiresAt returns when an event expires (unix seconds, as Badger
// keeps TTLs): the expiry in its state record, or, for an event without
// one, its record's TTL. Zero: it does not.
func eventExpiresAt(t testing.TB, s *Badger, id string) uint64 {
	t.Helper()
	var (
		st  eventState
		has bool
	)
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		st, has, err = txnState(txn, id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if has {
		return uint64(st.expires)
	}
	return expiresAt(t, s, eventKey(id))
}

// wantEventTTL checks event id expires after about ttl from now, and
// that the sweeper has an entry for it then.
func wantEventTTL(t testing.TB, s *Badger, id string, ttl time.Duration) {
	t.Helper()
	exp := int64(eventExpiresAt(t, s, id))
	want := time.Now().Add(ttl).Unix()
	if exp < want-30 || exp > want+1 {
		t.Fatalf("event %q expires at %d, want about %d (now + %v)", id, exp, want, ttl)
	}
	if keys := keysWithPrefix(t, s, []byte{pExpiry, '|'}); !slices.Contains(keys, string(expiryKey(exp, id))) {
		t.Fatalf("sweeper entries %q, want one for %q at %d", keys, id, exp)
	}
}

func keysWithPrefix(t testing.TB, s *Badger, prefix []byte) []string {
	t.Helper()
	var keys []string
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, string(it.Item().KeyCopy(nil)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func countPrefix(t testing.TB, s *Badger, prefix []byte) int {
	return len(keysWithPrefix(t, s, prefix))
}

// wantGone checks an event and its deliveries were not stored.
func wantGone(t testing.TB, s Store, eventID string, deliveryIDs ...string) {
	t.Helper()
	if _, err := s.Event(eventID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Event(%s): err = %v, want ErrNotFound", eventID, err)
	}
	for _, id := range deliveryIDs {
		if _, err := s.Delivery(id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Delivery(%s): err = %v, want ErrNotFound", id, err)
		}
	}
}

func waitGroup(t testing.TB, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * wait):
		t.Fatalf("goroutines still running after %v", 2*wait)
	}
}

// bounded runs fn and fails the test if it does not return in time.
func bounded(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatalf("%s did not return within %v", what, wait)
	}
}
