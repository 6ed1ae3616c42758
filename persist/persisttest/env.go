package persisttest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// wait bounds every blocking call, so a hang fails the test instead of
// eating the suite's timeout.
const wait = 20 * time.Second

// env is one subtest's view of the backend: a fresh location, the
// clock, and the store open on it.
type env struct {
	t     *testing.T
	h     *Harness
	dir   string
	clock *Clock
	opts  persist.Options
	s     persist.Store
	// t0 is the clock's start, the base of the due times tests write.
	t0 time.Time
}

func newEnv(t *testing.T, h *Harness) *env {
	start := time.Now().Truncate(time.Second)
	e := &env{t: t, h: h, dir: h.NewDir(t), clock: NewClock(start), t0: start}
	e.opts = persist.Options{Now: e.clock.Now}
	return e
}

// require skips the test unless the backend offers f.
func (e *env) require(f Feature) {
	e.t.Helper()
	if why, ok := e.h.Lacks[f]; ok {
		e.t.Skipf("backend lacks %s: %s", f, why)
	}
}

// open opens the store at the env's location with its options (after
// the test adjusted them) and closes it when the test ends.
func (e *env) open() persist.Store {
	e.t.Helper()
	return e.openAt(e.dir)
}

func (e *env) openAt(dir string) persist.Store {
	e.t.Helper()
	opts := e.opts
	opts.Dir = dir
	s := e.h.Open(e.t, dir, opts)
	if s == nil {
		e.t.Fatalf("Harness.Open(%s) returned no store", dir)
	}
	e.t.Cleanup(func() { _ = s.Close() })
	e.s = s
	return s
}

func (e *env) at(d time.Duration) time.Time { return e.t0.Add(d) }

func (e *env) event(id, data string) *persist.Event {
	return &persist.Event{
		ID:       id,
		Type:     "test.event",
		Source:   "conformance",
		Time:     e.t0,
		Received: e.t0,
		Data:     []byte(data),
	}
}

func (e *env) delivery(id, eventID, route string, due time.Time) *persist.Delivery {
	return &persist.Delivery{
		ID:      id,
		EventID: eventID,
		Route:   route,
		Status:  persist.StatusPending,
		Created: e.t0,
		Due:     due,
	}
}

// one is an event with one delivery per route, all due at due, deduped
// on its id as the engine does. Delivery ids are eventID + "/" + route.
func (e *env) one(eventID string, due time.Time, routes ...string) persist.Ingest {
	return e.oneData(eventID, `{"n":1}`, due, routes...)
}

func (e *env) oneData(eventID, data string, due time.Time, routes ...string) persist.Ingest {
	in := persist.Ingest{Event: e.event(eventID, data), Dedupe: eventID}
	for _, r := range routes {
		in.Deliveries = append(in.Deliveries, e.delivery(eventID+"/"+r, eventID, r, due))
	}
	in.Event.Routes = routes
	return in
}

// ordered is an event with one delivery to route "r" with an order key;
// the delivery's id is the event's.
func (e *env) ordered(id, key string, due time.Time) persist.Ingest {
	in := persist.Ingest{Event: e.event(id, `{}`)}
	d := e.delivery(id, id, "r", due)
	d.OrderKey = key
	in.Deliveries = []*persist.Delivery{d}
	return in
}

func (e *env) ingest(batch ...persist.Ingest) []persist.IngestResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, err := e.s.Ingest(ctx, batch)
	if err != nil {
		e.t.Fatalf("Ingest: %v", err)
	}
	if len(res) != len(batch) {
		e.t.Fatalf("Ingest returned %d results for %d ingests", len(res), len(batch))
	}
	return res
}

// record writes o and waits for done, failing unless it is called once,
// with nil.
func (e *env) record(o persist.Outcome) {
	e.t.Helper()
	if err := e.recordErr(o); err != nil {
		e.t.Fatalf("Record(%s): done(%v), want done(nil)", o.Delivery.ID, err)
	}
}

func (e *env) recordErr(o persist.Outcome) error {
	e.t.Helper()
	var calls atomic.Int32
	got := make(chan error, 4)
	e.s.Record(o, func(err error) {
		calls.Add(1)
		got <- err
	})
	select {
	case err := <-got:
		// A second call would come from the same commit: an empty
		// ingest submitted after it is committed after it.
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if _, berr := e.s.Ingest(ctx, nil); berr != nil && !errors.Is(berr, persist.ErrClosed) {
			e.t.Fatalf("empty Ingest: %v", berr)
		}
		if n := calls.Load(); n != 1 {
			e.t.Fatalf("Record: done called %d times, want once", n)
		}
		return err
	case <-time.After(wait):
		e.t.Fatalf("Record: done not called within %v", wait)
	}
	return nil
}

// finish claims delivery id at its current due time and records it
// final with status st at done, with one more attempt.
func (e *env) finish(id string, st persist.Status, done time.Time) *persist.Delivery {
	e.t.Helper()
	d := e.mustDelivery(id)
	claimed := d.Due
	d.Attempts++
	d.Status, d.Done, d.LastAttempt = st, done, done
	d.LastStatus = 200
	if st == persist.StatusDead {
		d.LastStatus = 400
	}
	e.record(persist.Outcome{Delivery: d, ClaimedDue: claimed,
		Attempt: &persist.Attempt{N: d.Attempts, Start: done, Status: d.LastStatus}})
	return d
}

// retry claims delivery id and records a failed attempt, due again at due.
func (e *env) retry(id string, at, due time.Time) *persist.Delivery {
	e.t.Helper()
	d := e.mustDelivery(id)
	claimed := d.Due
	d.Attempts++
	d.Due, d.LastAttempt, d.LastStatus, d.LastClass = due, at, 503, "http_5xx"
	e.record(persist.Outcome{Delivery: d, ClaimedDue: claimed,
		Attempt: &persist.Attempt{N: d.Attempts, Start: at, Status: 503, Class: "http_5xx"}})
	return d
}

func (e *env) mustDelivery(id string) *persist.Delivery {
	e.t.Helper()
	d, err := e.s.Delivery(id)
	if err != nil {
		e.t.Fatalf("Delivery(%q): %v", id, err)
	}
	return d
}

func (e *env) mustEvent(id string) *persist.Event {
	e.t.Helper()
	ev, err := e.s.Event(id)
	if err != nil {
		e.t.Fatalf("Event(%q): %v", id, err)
	}
	return ev
}

func (e *env) attempts(id string) []persist.Attempt {
	e.t.Helper()
	as, err := e.s.Attempts(id)
	if err != nil {
		e.t.Fatalf("Attempts(%q): %v", id, err)
	}
	return as
}

func attemptNs(as []persist.Attempt) []int {
	ns := make([]int, len(as))
	for i, a := range as {
		ns[i] = a.N
	}
	return ns
}

func (e *env) wantGone(eventID string, deliveryIDs ...string) {
	e.t.Helper()
	if _, err := e.s.Event(eventID); !errors.Is(err, persist.ErrNotFound) {
		e.t.Fatalf("Event(%s): err = %v, want ErrNotFound", eventID, err)
	}
	for _, id := range deliveryIDs {
		if _, err := e.s.Delivery(id); !errors.Is(err, persist.ErrNotFound) {
			e.t.Fatalf("Delivery(%s): err = %v, want ErrNotFound", id, err)
		}
	}
}

func (e *env) wantPending(want map[string]int) {
	e.t.Helper()
	got, err := e.s.Pending()
	if err != nil {
		e.t.Fatalf("Pending: %v", err)
	}
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		e.t.Fatalf("Pending() = %v, want %v", got, want)
	}
}

func (e *env) wantDead(want map[string]int) {
	e.t.Helper()
	taken := 0
	got, err := e.s.DeadCounts(func() { taken++ })
	if err != nil {
		e.t.Fatalf("DeadCounts: %v", err)
	}
	if taken != 1 {
		e.t.Fatalf("DeadCounts called its taken hook %d times, want once", taken)
	}
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		e.t.Fatalf("DeadCounts() = %v, want %v", got, want)
	}
}

// due returns the refs Due lists for route at now (limit 1000).
func (e *env) due(route string, now time.Time, skip func(string) bool) ([]persist.Ref, time.Time) {
	e.t.Helper()
	refs, next, err := e.s.Due(route, now, 1000, skip)
	if err != nil {
		e.t.Fatalf("Due(%q): %v", route, err)
	}
	return refs, next
}

// wantDue checks the ids and due times Due lists, in order, and next.
func (e *env) wantDue(route string, now time.Time, want []persist.Ref, wantNext time.Time) {
	e.t.Helper()
	refs, next := e.due(route, now, nil)
	if fmtRefs(refs) != fmtRefs(want) {
		e.t.Fatalf("Due(%q, now=%s) = %s, want %s", route, fmtTime(now), fmtRefs(refs), fmtRefs(want))
	}
	if !next.Equal(wantNext) {
		e.t.Fatalf("Due(%q, now=%s) next = %s, want %s", route, fmtTime(now), fmtTime(next), fmtTime(wantNext))
	}
}

// dueIDs lists the ids Due returns for route at now.
func (e *env) dueIDs(route string, now time.Time) []string {
	e.t.Helper()
	refs, _ := e.due(route, now, nil)
	ids := make([]string, len(refs))
	for i, r := range refs {
		ids[i] = r.ID
	}
	return ids
}

func wantIDs(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

func fmtRefs(rs []persist.Ref) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%s@%s", r.ID, fmtTime(r.Due))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// eventually polls cond every 100ms until it holds or bound (wall time)
// passes, then fails with what.
func (e *env) eventually(bound time.Duration, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not within %v", what, bound)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func gone(err error) bool { return errors.Is(err, persist.ErrNotFound) }
