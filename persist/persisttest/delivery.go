package persisttest

import (
	"reflect"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// testClaim: Due lists a route's due deliveries in due order and no
// other route's; it claims nothing (a delivery stays listed until its
// outcome is recorded), skip hides the ones the caller holds, limit
// bounds the page, and next tells when the first entry not taken is due.
func testClaim(t *testing.T, e *env) {
	e.open()
	at := func(sec int) time.Time { return e.at(time.Duration(sec) * time.Second) }
	// "a" is a byte prefix of "ab": their ranges must not mix.
	e.ingest(e.one("e3", at(3), "a"), e.one("e1", at(1), "a", "ab"), e.one("e2", at(2), "b"), e.one("e9", at(9), "a"))
	e.wantDue("a", at(5), []persist.Ref{{ID: "e1/a", Due: at(1)}, {ID: "e3/a", Due: at(3)}}, at(9))
	e.wantDue("ab", at(5), []persist.Ref{{ID: "e1/ab", Due: at(1)}}, time.Time{})
	e.wantDue("b", at(0), nil, at(2))
	e.wantDue("none", at(100), nil, time.Time{})
	// Listing is not claiming: listed again.
	e.wantDue("a", at(5), []persist.Ref{{ID: "e1/a", Due: at(1)}, {ID: "e3/a", Due: at(3)}}, at(9))

	held := map[string]bool{"e1/a": true}
	refs, next := e.due("a", at(5), func(id string) bool { return held[id] })
	if fmtRefs(refs) != fmtRefs([]persist.Ref{{ID: "e3/a", Due: at(3)}}) || !next.Equal(at(9)) {
		t.Fatalf("Due with e1/a held = %s next %s, want [e3/a] next %s", fmtRefs(refs), fmtTime(next), fmtTime(at(9)))
	}
	refs, next, err := e.s.Due("a", at(5), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmtRefs(refs) != fmtRefs([]persist.Ref{{ID: "e1/a", Due: at(1)}}) || !next.Equal(at(3)) {
		t.Fatalf("Due limit 1 = %s next %s, want [e1/a] next %s", fmtRefs(refs), fmtTime(next), fmtTime(at(3)))
	}
	// A zero Due is simply due, before every real time.
	in := e.one("z", time.Time{}, "a")
	e.ingest(in)
	if ids := e.dueIDs("a", at(0)); len(ids) != 1 || ids[0] != "z/a" {
		t.Fatalf("Due at t0 with a zero-due delivery = %v, want [z/a]", ids)
	}
}

// testDueFrom: DueFrom starts at from and reports the last due time it
// passed, a safe from for the next call.
func testDueFrom(t *testing.T, e *env) {
	e.open()
	at := func(sec int) time.Time { return e.at(time.Duration(sec) * time.Second) }
	e.ingest(e.one("e1", at(1), "r"), e.one("e2", at(2), "r"), e.one("e3", at(3), "r"), e.one("e5", at(5), "r"))
	refs, next, last, err := e.s.DueFrom("r", at(2), at(4), 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []persist.Ref{{ID: "e2/r", Due: at(2)}, {ID: "e3/r", Due: at(3)}}
	if fmtRefs(refs) != fmtRefs(want) || !next.Equal(at(5)) || !last.Equal(at(3)) {
		t.Fatalf("DueFrom(from 2s, now 4s) = %s next %s last %s, want %s next %s last %s",
			fmtRefs(refs), fmtTime(next), fmtTime(last), fmtRefs(want), fmtTime(at(5)), fmtTime(at(3)))
	}
	refs, _, last, err = e.s.DueFrom("r", time.Time{}, at(4), 10, func(id string) bool { return id == "e3/r" })
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 2 || !last.Equal(at(3)) {
		t.Fatalf("DueFrom(start, e3 skipped) = %s last %s, want 2 refs, last %s (a skipped entry counts as passed)",
			fmtRefs(refs), fmtTime(last), fmtTime(at(3)))
	}
}

// testOutcomeDelivered: a final delivered outcome removes the claimed
// ready entry, keeps the delivery and its attempts for look-up, counts
// down its event and indexes it for replay.
func testOutcomeDelivered(t *testing.T, e *env) {
	e.opts.Retention = 2 * time.Hour
	e.open()
	e.ingest(e.one("ev", e.t0, "a", "b"), e.one("other", e.t0, "a"))
	e.clock.Advance(time.Minute)
	done := e.clock.Now()
	e.finish("ev/a", persist.StatusDelivered, done)

	e.wantDue("a", e.at(time.Hour), []persist.Ref{{ID: "other/a", Due: e.t0}}, time.Time{})
	e.wantPending(map[string]int{"a": 1, "b": 1})
	got := e.mustDelivery("ev/a")
	if got.Status != persist.StatusDelivered || got.Attempts != 1 || !got.Done.Equal(done) || got.LastStatus != 200 {
		t.Fatalf("delivered Delivery = %+v", got)
	}
	if as := e.attempts("ev/a"); !reflect.DeepEqual(attemptNs(as), []int{1}) || as[0].Status != 200 || !as[0].Start.Equal(done) {
		t.Fatalf("Attempts = %+v", as)
	}
	ev := e.mustEvent("ev")
	if ev.Remaining != 1 {
		t.Fatalf("Remaining = %d after one of two delivered, want 1", ev.Remaining)
	}
	if want := done.Add(2 * time.Hour).UnixNano(); ev.KeepUntil != want {
		t.Fatalf("KeepUntil = %d, want %d (the clock's now + retention)", ev.KeepUntil, want)
	}
	ids, _, err := e.s.ReplayIDs("a", persist.StatusDelivered, time.Time{}, time.Time{}, "", 10)
	if err != nil || !reflect.DeepEqual(ids, []string{"ev/a"}) {
		t.Fatalf("ReplayIDs(a, delivered) = %v, %v; want [ev/a]", ids, err)
	}
	e.wantDead(nil)
	// An outcome for a delivery whose event is gone is not an error.
	orphan := e.delivery("orphan", "no-such-event", "a", e.t0)
	orphan.Status, orphan.Done = persist.StatusDelivered, done
	e.record(persist.Outcome{Delivery: orphan, ClaimedDue: e.t0})
	if err := e.recordErr(persist.Outcome{}); err == nil {
		t.Fatal("Record without a delivery: done(nil), want an error")
	}
}

// testRetryAtDueTime: a pending outcome moves the delivery to its new due
// time: not listed before it, listed from it on, history appended. An
// outcome without an attempt (a requeue) spends none.
func testRetryAtDueTime(t *testing.T, e *env) {
	e.open()
	e.ingest(e.one("ev", e.t0, "r"))
	next := e.at(time.Minute)
	e.retry("ev/r", e.t0, next)
	e.wantDue("r", e.at(30*time.Second), nil, next)
	e.wantDue("r", next, []persist.Ref{{ID: "ev/r", Due: next}}, time.Time{})
	e.wantPending(map[string]int{"r": 1})
	got := e.mustDelivery("ev/r")
	if got.Status != persist.StatusPending || got.Attempts != 1 || !got.Due.Equal(next) || got.LastStatus != 503 || got.LastClass != "http_5xx" {
		t.Fatalf("Delivery after a retry = %+v", got)
	}
	if ev := e.mustEvent("ev"); ev.Remaining != 1 || ev.KeepUntil != 0 {
		t.Fatalf("event after a retry = %+v, want Remaining 1 and no KeepUntil", ev)
	}
	later := next.Add(time.Hour)
	got.Due = later
	e.record(persist.Outcome{Delivery: got, ClaimedDue: next})
	e.wantDue("r", later, []persist.Ref{{ID: "ev/r", Due: later}}, time.Time{})
	if as := e.attempts("ev/r"); !reflect.DeepEqual(attemptNs(as), []int{1}) {
		t.Fatalf("Attempts after an attempt-less outcome = %v, want [1]", attemptNs(as))
	}
	// Claimed and rescheduled at the same due time: still listed once.
	e.record(persist.Outcome{Delivery: got, ClaimedDue: later})
	e.wantDue("r", later, []persist.Ref{{ID: "ev/r", Due: later}}, time.Time{})
}

// testDead: a dead outcome is final, counted per route, listed and
// replayable, and counts down its event like a delivered one.
func testDead(t *testing.T, e *env) {
	e.open()
	e.ingest(e.one("ev", e.t0, "bad", "ok"))
	e.retry("ev/bad", e.t0, e.at(time.Second))
	done := e.at(2 * time.Second)
	e.finish("ev/bad", persist.StatusDead, done)
	e.wantPending(map[string]int{"ok": 1})
	e.wantDead(map[string]int{"bad": 1})
	e.wantDue("bad", e.at(time.Hour), nil, time.Time{})
	got := e.mustDelivery("ev/bad")
	if got.Status != persist.StatusDead || got.Attempts != 2 || !got.Done.Equal(done) {
		t.Fatalf("dead Delivery = %+v", got)
	}
	if as := e.attempts("ev/bad"); !reflect.DeepEqual(attemptNs(as), []int{1, 2}) {
		t.Fatalf("Attempts = %v, want [1 2]", attemptNs(as))
	}
	ds, next, err := e.s.ListDeliveries(persist.ListFilter{Route: "bad", Status: persist.StatusDead})
	if err != nil || len(ds) != 1 || ds[0].ID != "ev/bad" || next != "" {
		t.Fatalf("ListDeliveries(bad, dead) = %v, %q, %v", ds, next, err)
	}
	if ev := e.mustEvent("ev"); ev.Remaining != 1 {
		t.Fatalf("Remaining = %d, want 1", ev.Remaining)
	}
}

// testAttemptLog: the history keeps the newest AttemptLog attempts.
func testAttemptLog(t *testing.T, e *env) {
	e.opts.AttemptLog = 3
	e.open()
	e.ingest(e.one("ev", e.t0, "r"))
	for i := 1; i <= 5; i++ {
		e.retry("ev/r", e.at(time.Duration(i)*time.Second), e.at(time.Duration(i)*time.Second))
	}
	if as := e.attempts("ev/r"); !reflect.DeepEqual(attemptNs(as), []int{3, 4, 5}) {
		t.Fatalf("Attempts = %v, want [3 4 5]", attemptNs(as))
	}
	e.finish("ev/r", persist.StatusDelivered, e.at(10*time.Second))
	if as := e.attempts("ev/r"); !reflect.DeepEqual(attemptNs(as), []int{4, 5, 6}) {
		t.Fatalf("Attempts after the final one = %v, want [4 5 6]", attemptNs(as))
	}
}

// testRequeue: a dead or delivered delivery becomes pending again, due
// at now, with its history; a pending one due later moves to now;
// unknown ids are skipped.
func testRequeue(t *testing.T, e *env) {
	e.open()
	e.ingest(e.one("d", e.t0, "r"), e.one("v", e.t0, "r"), e.one("p", e.t0, "r"))
	e.finish("d/r", persist.StatusDead, e.at(time.Second))
	e.finish("v/r", persist.StatusDelivered, e.at(time.Second))
	e.retry("p/r", e.at(time.Second), e.at(time.Hour))
	e.wantPending(map[string]int{"r": 1})
	e.wantDead(map[string]int{"r": 1})

	now := e.at(time.Minute)
	got, err := e.s.Requeue([]string{"d/r", "v/r", "p/r", "nope"}, now)
	if err != nil {
		t.Fatalf("Requeue: %v", err)
	}
	want := []persist.Requeued{
		{ID: "d/r", Route: "r", Was: persist.StatusDead},
		{ID: "v/r", Route: "r", Was: persist.StatusDelivered},
		{ID: "p/r", Route: "r", Was: persist.StatusPending},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Requeue = %+v, want %+v", got, want)
	}
	e.wantPending(map[string]int{"r": 3})
	e.wantDead(nil)
	refs, _ := e.due("r", now, nil)
	if len(refs) != 3 {
		t.Fatalf("Due after requeue = %s, want all three due at %s", fmtRefs(refs), fmtTime(now))
	}
	for _, ref := range refs {
		if !ref.Due.Equal(now) {
			t.Fatalf("Due after requeue = %s, want all three due at %s", fmtRefs(refs), fmtTime(now))
		}
	}
	d := e.mustDelivery("d/r")
	if d.Status != persist.StatusPending || d.Attempts != 1 || !d.Done.IsZero() {
		t.Fatalf("requeued dead delivery = %+v", d)
	}
	if ev := e.mustEvent("d"); ev.Remaining != 1 {
		t.Fatalf("event of a requeued delivery: Remaining = %d, want 1", ev.Remaining)
	}
	// The next attempt is numbered after the last.
	e.finish("d/r", persist.StatusDelivered, e.at(2*time.Minute))
	if as := e.attempts("d/r"); !reflect.DeepEqual(attemptNs(as), []int{1, 2}) {
		t.Fatalf("Attempts after requeue and delivery = %v, want [1 2]", attemptNs(as))
	}
}

// testReplay: ReplayIDs selects final deliveries of a route by the time
// they became final, in that order, in pages; requeueing them does not
// disturb the selection.
func testReplay(t *testing.T, e *env) {
	e.open()
	for i := 0; i < 5; i++ {
		id := string(rune('a' + i))
		e.ingest(e.one(id, e.t0, "r", "s"))
		e.finish(id+"/r", persist.StatusDead, e.at(time.Duration(10-i)*time.Second))
	}
	e.finish("a/s", persist.StatusDead, e.at(time.Second))
	// Dead at 10s (a), 9s (b), 8s (c), 7s (d), 6s (e): [7s, 10s) is d, c, b.
	ids, next, err := e.s.ReplayIDs("r", persist.StatusDead, e.at(7*time.Second), e.at(10*time.Second), "", 2)
	if err != nil || !reflect.DeepEqual(ids, []string{"d/r", "c/r"}) || next == "" {
		t.Fatalf("ReplayIDs page 1 = %v, %q, %v; want [d/r c/r] and a cursor", ids, next, err)
	}
	if _, err := e.s.Requeue(ids, e.at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	ids, next, err = e.s.ReplayIDs("r", persist.StatusDead, e.at(7*time.Second), e.at(10*time.Second), next, 2)
	if err != nil || !reflect.DeepEqual(ids, []string{"b/r"}) || next != "" {
		t.Fatalf("ReplayIDs page 2 = %v, %q, %v; want [b/r] and no cursor", ids, next, err)
	}
	if _, _, err := e.s.ReplayIDs("r", persist.StatusPending, time.Time{}, time.Time{}, "", 1); err == nil {
		t.Fatal("ReplayIDs of pending deliveries succeeded")
	}
	e.wantPending(map[string]int{"r": 2, "s": 4})
	e.wantDead(map[string]int{"r": 3, "s": 1})
}

// testOrderedKeys: deliveries of a route with the same OrderKey are due
// one at a time in ingest order; a failed attempt keeps the others
// waiting, a final outcome makes the next one due at once.
func testOrderedKeys(t *testing.T, e *env) {
	e.clock.Advance(time.Hour)
	now := e.clock.Now()
	e.open()
	batch := []persist.Ingest{e.ordered("d1", "k1", e.t0), e.ordered("d2", "k1", e.t0), e.ordered("e1", "k2", e.t0), e.ordered("d3", "k1", e.t0)}
	e.ingest(batch...)
	wantIDs(t, "due after ingest", e.dueIDs("r", now), "d1", "e1")
	e.wantPending(map[string]int{"r": 4})
	if d := e.mustDelivery("d2"); !d.Waiting || d.Status != persist.StatusPending {
		t.Fatalf("d2 = %+v, want pending and waiting", d)
	}
	later := now.Add(time.Minute)
	e.retry("d1", now, later)
	wantIDs(t, "due after d1 failed", e.dueIDs("r", now), "e1")
	wantIDs(t, "due when d1 is due again", e.dueIDs("r", later), "e1", "d1")

	e.finish("d1", persist.StatusDelivered, now)
	wantIDs(t, "due after d1 delivered", e.dueIDs("r", now), "e1", "d2")
	if d := e.mustDelivery("d2"); d.Waiting || !d.Due.Equal(now) {
		t.Fatalf("promoted d2 = %+v, want not waiting and due at the clock's now", d)
	}
	e.finish("d2", persist.StatusDead, now)
	wantIDs(t, "due after d2 dead", e.dueIDs("r", now), "e1", "d3")
	e.finish("d3", persist.StatusDelivered, now)
	e.finish("e1", persist.StatusDelivered, now)
	e.wantPending(nil)
	in := e.ordered("d4", "k1", now)
	e.ingest(in)
	wantIDs(t, "a new delivery of an empty sequence", e.dueIDs("r", now), "d4")

	// A requeued final delivery rejoins its key's sequence behind the
	// one now active.
	if _, err := e.s.Requeue([]string{"d2"}, now); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "due after d2 requeued behind d4", e.dueIDs("r", now), "d4")
	e.finish("d4", persist.StatusDelivered, now)
	wantIDs(t, "due after d4 delivered", e.dueIDs("r", now), "d2")
}

// testList: ListDeliveries pages through a route's deliveries of one
// status, and rejects what it cannot read.
func testList(t *testing.T, e *env) {
	e.open()
	at := func(sec int) time.Time { return e.at(time.Duration(sec) * time.Second) }
	e.ingest(e.one("c", at(3), "r"), e.one("a", at(1), "r"), e.one("b", at(2), "r"), e.one("x", at(0), "other"))
	var got []string
	cursor := ""
	for page := 0; ; page++ {
		if page > 10 {
			t.Fatal("ListDeliveries did not end")
		}
		ds, next, err := e.s.ListDeliveries(persist.ListFilter{Route: "r", Status: persist.StatusPending, Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			got = append(got, d.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	wantIDs(t, "pending of r in due order", got, "a/r", "b/r", "c/r")
	if _, _, err := e.s.ListDeliveries(persist.ListFilter{Limit: -1}); err == nil {
		t.Fatal("ListDeliveries with limit -1 succeeded")
	}
	if _, _, err := e.s.ListDeliveries(persist.ListFilter{Cursor: "not-a-cursor"}); err == nil {
		t.Fatal("ListDeliveries with a foreign cursor succeeded")
	}
}

// testRouteState: route states are stored, listed, and deleted by the
// zero state.
func testRouteState(t *testing.T, e *env) {
	s := e.open()
	st := persist.RouteState{Paused: true, PausedReason: "operator", VerifiedURL: "https://x.test/{id}"}
	if err := s.SetRouteState("r", st); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRouteState("q", persist.RouteState{Paused: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRouteState("q", persist.RouteState{}); err != nil {
		t.Fatal(err)
	}
	got, err := s.RouteStates()
	if err != nil || !reflect.DeepEqual(got, map[string]persist.RouteState{"r": st}) {
		t.Fatalf("RouteStates = %+v, %v; want only r", got, err)
	}
}
