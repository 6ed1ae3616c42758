package persisttest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// testEventsReceived: events are listed by received time within the
// window, in pages that a cursor continues; kept unmatched events count,
// bad limits and cursors are refused.
func testEventsReceived(t *testing.T, e *env) {
	s := e.open()
	var batch []persist.Ingest
	for i, id := range []string{"ev0", "ev1", "ev2", "ev3", "ev4"} {
		in := e.one(id, e.t0, "a")
		in.Event.Received = e.at(time.Duration(i) * time.Minute)
		batch = append(batch, in)
	}
	kept := persist.Ingest{Event: e.event("kept", `{}`), Keep: true}
	kept.Event.Received = e.at(150 * time.Second)
	batch = append(batch, kept)
	e.ingest(batch...)

	var got []string
	cursor, pages := "", 0
	for {
		evs, next, err := s.EventsReceived(e.at(time.Minute), e.at(4*time.Minute), cursor, 2)
		if err != nil {
			t.Fatalf("EventsReceived: %v", err)
		}
		pages++
		for _, ev := range evs {
			got = append(got, ev.ID)
			if ev.ID == "ev1" && (string(ev.Data) != `{"n":1}` || !reflect.DeepEqual(ev.Routes, []string{"a"})) {
				t.Fatalf("event ev1 as listed: %+v", ev)
			}
		}
		if next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("EventsReceived does not end")
		}
		cursor = next
	}
	wantIDs(t, "events received in [1m, 4m)", got, "ev1", "ev2", "kept", "ev3")
	if evs, next, err := s.EventsReceived(time.Time{}, time.Time{}, "", persist.MaxEventsPage); err != nil || len(evs) != 6 || next != "" {
		t.Fatalf("every event: %d, %q, %v", len(evs), next, err)
	}
	if _, _, err := s.EventsReceived(time.Time{}, time.Time{}, "", 0); !errors.Is(err, persist.ErrBadFilter) {
		t.Fatalf("limit 0: %v, want ErrBadFilter", err)
	}
	if _, _, err := s.EventsReceived(time.Time{}, time.Time{}, "!!", 10); !errors.Is(err, persist.ErrBadCursor) {
		t.Fatalf("bad cursor: %v, want ErrBadCursor", err)
	}
}

// testAddDeliveries: a delivery added to a stored event is pending and
// due, and its event lists and counts it; with skipRouted, an event that
// already has a delivery for the route gets none, so adding twice adds
// once; an event that is gone gets none; an event whose deliveries were
// all final counts the new one and no longer expires with them.
func testAddDeliveries(t *testing.T, e *env) {
	s := e.open()
	e.ingest(e.one("ev1", e.t0, "a"), e.one("ev2", e.t0, "a"))
	e.finish("ev2/a", persist.StatusDelivered, e.at(time.Second))

	add := func(skip bool, ds ...*persist.Delivery) []bool {
		t.Helper()
		added, err := s.AddDeliveries(ds, skip)
		if err != nil {
			t.Fatalf("AddDeliveries: %v", err)
		}
		if len(added) != len(ds) {
			t.Fatalf("AddDeliveries returned %d results for %d deliveries", len(added), len(ds))
		}
		return added
	}
	due := e.at(time.Minute)
	added := add(true,
		e.delivery("ev1/b", "ev1", "b", due),
		e.delivery("ev1/a2", "ev1", "a", due), // ev1 has a delivery for a
		e.delivery("ev2/b", "ev2", "b", due),
		e.delivery("gone/b", "gone", "b", due))
	if !reflect.DeepEqual(added, []bool{true, false, true, false}) {
		t.Fatalf("added = %v, want [true false true false]", added)
	}
	ev := e.mustEvent("ev1")
	if !reflect.DeepEqual(ev.Routes, []string{"a", "b"}) || !reflect.DeepEqual(ev.Deliveries, []string{"ev1/a", "ev1/b"}) || ev.Remaining != 2 {
		t.Fatalf("event ev1 after the add: %+v", ev)
	}
	ev = e.mustEvent("ev2")
	if ev.Remaining != 1 || ev.KeepUntil != 0 {
		t.Fatalf("event ev2, its delivery final, after the add: %+v", ev)
	}
	d := e.mustDelivery("ev2/b")
	if d.Status != persist.StatusPending || !d.Due.Equal(due) || d.Waiting {
		t.Fatalf("added delivery: %+v", d)
	}
	e.wantPending(map[string]int{"a": 1, "b": 2})
	e.wantDue("b", due, []persist.Ref{{ID: "ev1/b", Due: due}, {ID: "ev2/b", Due: due}}, time.Time{})
	if _, err := s.Delivery("ev1/a2"); !gone(err) {
		t.Fatalf("skipped delivery stored: %v", err)
	}

	// Again: nothing new. Without skipRouted: a second delivery.
	if added := add(true, e.delivery("ev1/b2", "ev1", "b", due)); added[0] {
		t.Fatal("a second add with skipRouted added a delivery")
	}
	if added := add(false, e.delivery("ev1/b3", "ev1", "b", due)); !added[0] {
		t.Fatal("an add without skipRouted was skipped")
	}
	ev = e.mustEvent("ev1")
	if !reflect.DeepEqual(ev.Routes, []string{"a", "b"}) || len(ev.Deliveries) != 3 || ev.Remaining != 3 {
		t.Fatalf("event ev1 after a redelivery: %+v", ev)
	}
	e.wantPending(map[string]int{"a": 1, "b": 3})

	// Final again: the event expires as before.
	e.require(Expiry)
	for _, id := range []string{"ev1/a", "ev1/b", "ev1/b3"} {
		e.finish(id, persist.StatusDelivered, e.at(2*time.Second))
	}
	if ev := e.mustEvent("ev1"); ev.Remaining != 0 || ev.KeepUntil == 0 {
		t.Fatalf("event ev1, all final: %+v", ev)
	}
}
