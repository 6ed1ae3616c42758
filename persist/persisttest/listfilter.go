package persisttest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// typed is an event of type typ with one delivery per route, created at
// created and due at due. Delivery ids are eventID + "/" + route.
func (e *env) typed(eventID, typ string, created, due time.Time, routes ...string) persist.Ingest {
	in := e.one(eventID, due, routes...)
	in.Event.Type = typ
	for _, d := range in.Deliveries {
		d.EventType, d.Created = typ, created
	}
	return in
}

// listAll pages through f with limit per page and returns the ids,
// failing if it takes more than 50 pages.
func (e *env) listAll(f persist.ListFilter, limit int) []string {
	e.t.Helper()
	var got []string
	f.Limit = limit
	for page := 0; ; page++ {
		if page > 50 {
			e.t.Fatalf("ListDeliveries(%+v) did not end", f)
		}
		ds, next, err := e.s.ListDeliveries(f)
		if err != nil {
			e.t.Fatalf("ListDeliveries(%+v): %v", f, err)
		}
		for _, d := range ds {
			got = append(got, d.ID)
		}
		if next == "" {
			return got
		}
		f.Cursor = next
	}
}

// testListFilter: ListDeliveries keeps only the event type and the time
// window asked for, over the due time (pending), the final time (dead,
// delivered) or the creation time (every state), across pages.
func testListFilter(t *testing.T, e *env) {
	e.open()
	at := func(sec int) time.Time { return e.at(time.Duration(sec) * time.Second) }
	e.ingest(
		e.typed("e1", "a.x", at(1), at(1), "r"),
		e.typed("e2", "b.y", at(2), at(2), "r"),
		e.typed("e3", "a.x", at(3), at(3), "r"),
		e.typed("e4", "b.y", at(4), at(4), "r"),
		e.typed("e5", "a.x", at(5), at(5), "r"),
		e.typed("e6", "a.x", at(6), at(6), "r"),
		// As stored before event types were recorded: no type.
		e.typed("e7", "", at(7), at(7), "r"),
		e.typed("o1", "a.x", at(3), at(3), "other"),
	)
	pending := persist.ListFilter{Route: "r", Status: persist.StatusPending}

	f := pending
	f.Type = "a.x"
	wantIDs(t, "pending of r of type a.x", e.listAll(f, 100), "e1/r", "e3/r", "e5/r", "e6/r")

	f = pending
	f.Since, f.Until = at(2), at(5)
	wantIDs(t, "pending of r due in [2s, 5s)", e.listAll(f, 100), "e2/r", "e3/r", "e4/r")

	// Every route, type and window, one per page.
	f = persist.ListFilter{Status: persist.StatusPending, Type: "a.x", Since: at(2), Until: at(6)}
	wantIDs(t, "pending of a.x due in [2s, 6s), one per page", e.listAll(f, 1), "o1/other", "e3/r", "e5/r")
	f.Since = time.Time{}
	wantIDs(t, "pending of a.x due before 6s, two per page", e.listAll(f, 2), "o1/other", "e1/r", "e3/r", "e5/r")

	// Every state: the window is over creation time.
	f = persist.ListFilter{Since: at(3), Until: at(5)}
	got := e.listAll(f, 1)
	slices.Sort(got)
	wantIDs(t, "every state created in [3s, 5s)", got, "e3/r", "e4/r", "o1/other")
	f.Type = "b.y"
	wantIDs(t, "every state of b.y created in [3s, 5s)", e.listAll(f, 100), "e4/r")

	// Final deliveries: the window is over the time they became final.
	e.finish("e1/r", persist.StatusDead, at(10))
	e.finish("e2/r", persist.StatusDead, at(20))
	e.finish("e3/r", persist.StatusDelivered, at(30))
	e.finish("e4/r", persist.StatusDelivered, at(40))
	wantIDs(t, "dead of r final since 15s",
		e.listAll(persist.ListFilter{Route: "r", Status: persist.StatusDead, Since: at(15)}, 100), "e2/r")
	wantIDs(t, "delivered of a.x final before 35s",
		e.listAll(persist.ListFilter{Status: persist.StatusDelivered, Type: "a.x", Until: at(35)}, 100), "e3/r")
	wantIDs(t, "delivered final in [31s, 40s)",
		e.listAll(persist.ListFilter{Status: persist.StatusDelivered, Since: at(31), Until: at(40)}, 100))

	// Nothing matches: an empty page and no cursor.
	ds, next, err := e.s.ListDeliveries(persist.ListFilter{Type: "no.such.type"})
	if err != nil || len(ds) != 0 || next != "" {
		t.Fatalf("ListDeliveries(type no.such.type) = %d deliveries, %q, %v; want none", len(ds), next, err)
	}

	// A window that ends before it starts is a bad filter.
	_, _, err = e.s.ListDeliveries(persist.ListFilter{Status: persist.StatusDead, Since: at(5), Until: at(4)})
	if !errors.Is(err, persist.ErrBadFilter) {
		t.Fatalf("ListDeliveries(until before since) = %v, want ErrBadFilter", err)
	}
}
