package persisttest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// testRetention: final deliveries, their attempts and (once all its
// deliveries are final) their event expire after the retention of their
// status; pending ones and their events never do.
func testRetention(t *testing.T, e *env) {
	e.require(Expiry)
	e.opts.Retention = time.Second
	e.opts.DeadRetention = time.Second
	e.open()
	e.ingest(e.one("v", e.t0, "r"), e.one("x", e.t0, "r"), e.one("p", e.t0, "r", "q"))
	e.finish("v/r", persist.StatusDelivered, e.clock.Now())
	e.finish("x/r", persist.StatusDead, e.clock.Now())
	e.finish("p/r", persist.StatusDelivered, e.clock.Now())
	e.wantDead(map[string]int{"r": 1})
	bound := time.Second + e.h.ExpiryGrace
	e.eventually(bound, "final deliveries and their events expired by a 1s retention", func() bool {
		_, ev1 := e.s.Event("v")
		_, ev2 := e.s.Event("x")
		_, d1 := e.s.Delivery("v/r")
		_, d2 := e.s.Delivery("x/r")
		_, d3 := e.s.Delivery("p/r")
		return gone(ev1) && gone(ev2) && gone(d1) && gone(d2) && gone(d3)
	})
	if as := e.attempts("v/r"); len(as) != 0 {
		t.Fatalf("Attempts of an expired delivery = %v, want none", attemptNs(as))
	}
	e.wantDead(nil)
	if ids, _, err := e.s.ReplayIDs("r", persist.StatusDead, time.Time{}, time.Time{}, "", 10); err != nil || len(ids) != 0 {
		t.Fatalf("ReplayIDs after expiry = %v, %v; want none", ids, err)
	}
	// p has a pending delivery: it and its event stay.
	if ev := e.mustEvent("p"); ev.Remaining != 1 {
		t.Fatalf("event with a pending delivery = %+v", ev)
	}
	e.mustDelivery("p/q")
	e.wantPending(map[string]int{"q": 1})
	// A final delivery whose event expired cannot be requeued.
	if got, err := e.s.Requeue([]string{"x/r"}, e.clock.Now()); err != nil || len(got) != 0 {
		t.Fatalf("Requeue of an expired delivery = %+v, %v; want nothing", got, err)
	}
}

// fill writes a known state for the reopen tests: 20 events to routes a
// and b, one delivered, one rescheduled with an attempt, one waiting
// behind its order key, a route state.
func fill(t *testing.T, e *env) {
	for i := 0; i < 20; i++ {
		in := e.one(fmt.Sprintf("ev%02d", i), e.at(time.Duration(i)*time.Second), "a", "b")
		in.Event.Data = []byte(fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("é", i*50)))
		e.ingest(in)
	}
	e.finish("ev00/a", persist.StatusDelivered, e.t0)
	e.retry("ev01/b", e.t0, e.at(time.Hour))
	e.ingest(e.ordered("o1", "k", e.t0), e.ordered("o2", "k", e.t0))
	if err := e.s.SetRouteState("a", persist.RouteState{Paused: true, PausedReason: "test"}); err != nil {
		t.Fatal(err)
	}
}

// check verifies the state fill wrote.
func check(t *testing.T, e *env) {
	t.Helper()
	e.wantPending(map[string]int{"a": 19, "b": 20, "r": 2})
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("ev%02d", i)
		if want := fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("é", i*50)); string(e.mustEvent(id).Data) != want {
			t.Fatalf("event %s data changed", id)
		}
	}
	if d := e.mustDelivery("ev00/a"); d.Status != persist.StatusDelivered {
		t.Fatalf("ev00/a = %+v, want delivered", d)
	}
	if d := e.mustDelivery("ev01/b"); d.Status != persist.StatusPending || d.Attempts != 1 || !d.Due.Equal(e.at(time.Hour)) {
		t.Fatalf("ev01/b = %+v, want pending, 1 attempt, due in an hour", d)
	}
	if as := e.attempts("ev01/b"); len(as) != 1 || as[0].Status != 503 {
		t.Fatalf("Attempts(ev01/b) = %+v", as)
	}
	if ev := e.mustEvent("ev00"); ev.Remaining != 1 {
		t.Fatalf("ev00 Remaining = %d, want 1", ev.Remaining)
	}
	refs, _ := e.due("b", e.at(time.Minute), nil)
	if len(refs) != 19 {
		t.Fatalf("Due(b) lists %d, want 19", len(refs))
	}
	wantIDs(t, "ordered after reopen", e.dueIDs("r", e.at(time.Minute)), "o1")
	e.finish("o1", persist.StatusDelivered, e.at(time.Minute))
	wantIDs(t, "ordered after o1 delivered", e.dueIDs("r", e.clock.Now().Add(time.Minute)), "o2")
	st, err := e.s.RouteStates()
	if err != nil || !reflect.DeepEqual(st, map[string]persist.RouteState{"a": {Paused: true, PausedReason: "test"}}) {
		t.Fatalf("RouteStates = %+v, %v", st, err)
	}
}

// testReopenAfterClose: Close keeps everything committed; the location
// opens again with it, and a second Close is harmless.
func testReopenAfterClose(t *testing.T, e *env) {
	s := e.open()
	fill(t, e)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	e.open()
	check(t, e)
}

// testReopenAfterCrash: what Ingest, Requeue and SetRouteState returned
// for survives a crash; so do outcomes that were committed (a real
// crash may lose those, which at-least-once allows: here the store is
// idle when it dies). Claims do not survive: everything pending is due.
func testReopenAfterCrash(t *testing.T, e *env) {
	e.require(Crash)
	s := e.open()
	fill(t, e)
	// A delivery claimed (listed by Due) whose attempt never ends.
	if refs, _ := e.due("a", e.at(time.Minute), nil); len(refs) == 0 {
		t.Fatal("nothing due on a")
	}
	dir := e.h.Crash(t, s, e.dir)
	e.openAt(dir)
	check(t, e)
}

// testClosed: after Close every call fails with ErrClosed, and Record
// still calls done.
func testClosed(t *testing.T, e *env) {
	s := e.open()
	e.ingest(e.one("ev", e.t0, "r"))
	d := e.mustDelivery("ev/r")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ingest(context.Background(), []persist.Ingest{e.one("ev2", e.t0, "r")}); !errors.Is(err, persist.ErrClosed) {
		t.Fatalf("Ingest after Close: %v, want ErrClosed", err)
	}
	done := make(chan error, 1)
	s.Record(persist.Outcome{Delivery: d, ClaimedDue: d.Due}, func(err error) { done <- err })
	select {
	case err := <-done:
		if !errors.Is(err, persist.ErrClosed) {
			t.Fatalf("Record after Close: done(%v), want ErrClosed", err)
		}
	case <-time.After(wait):
		t.Fatal("Record after Close never called done")
	}
	if _, err := s.Delivery("ev/r"); !errors.Is(err, persist.ErrClosed) {
		t.Fatalf("Delivery after Close: %v, want ErrClosed", err)
	}
	if _, _, err := s.Due("r", e.t0, 10, nil); !errors.Is(err, persist.ErrClosed) {
		t.Fatalf("Due after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Requeue([]string{"ev/r"}, e.t0); !errors.Is(err, persist.ErrClosed) {
		t.Fatalf("Requeue after Close: %v, want ErrClosed", err)
	}
	if err := s.SetRouteState("r", persist.RouteState{Paused: true}); !errors.Is(err, persist.ErrClosed) {
		t.Fatalf("SetRouteState after Close: %v, want ErrClosed", err)
	}
}
