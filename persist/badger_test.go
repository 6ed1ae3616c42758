package persist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIngestWithoutDeliveries(t *testing.T) {
	now := t0.Add(-time.Hour)
	s := openStore(t, Options{Now: func() time.Time { return now }, Retention: 5 * time.Hour})
	res := ingest(t, s,
		Ingest{Event: newEvent("dropped", "x")},
		Ingest{Event: newEvent("kept", "y"), Keep: true},
	)
	if res[0] != (IngestResult{ID: "dropped"}) || res[1] != (IngestResult{ID: "kept"}) {
		t.Fatalf("results = %+v", res)
	}
	if _, err := s.Event("dropped"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("event with no deliveries and no Keep was stored (err=%v)", err)
	}
	ev := mustEvent(t, s, "kept")
	if ev.Remaining != 0 || string(ev.Data) != "y" {
		t.Fatalf("kept event = %+v", ev)
	}
	// The stored record must say when it expires, like events whose
	// deliveries all finished.
	if want := now.Add(5 * time.Hour).UnixNano(); ev.KeepUntil != want {
		t.Fatalf("kept event KeepUntil = %d, want %d", ev.KeepUntil, want)
	}
	if exp := eventExpiresAt(t, s, "kept"); exp == 0 {
		t.Fatalf("kept event has no TTL")
	}
	wantPending(t, s, nil)
}

func TestIngestRejectsBadInput(t *testing.T) {
	s := openStore(t, Options{})
	ctx := context.Background()
	if _, err := s.Ingest(ctx, []Ingest{{}}); err == nil {
		t.Fatal("Ingest with nil Event succeeded")
	}
	long := strings.Repeat("r", 256)
	in := oneIngest("ev-long", t0, long)
	if _, err := s.Ingest(ctx, []Ingest{in}); err == nil || !strings.Contains(err.Error(), "route") {
		t.Fatalf("Ingest with a 256-byte route name: err = %v, want an error about the route", err)
	}
	// 255 bytes is the longest name the key layout can hold.
	ok := strings.Repeat("r", 255)
	ingest(t, s, oneIngest("ev-ok", t0, ok))
	wantPending(t, s, map[string]int{ok: 1})
	wantDue(t, s, ok, t0, 10, nil, []Ref{{ID: "ev-ok/" + ok, Due: t0}}, time.Time{})
}

func TestDueOrderAndRouteIsolation(t *testing.T) {
	s := openStore(t, Options{})
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	// Route "ab" and "b" hold entries due earlier than all of "a"'s; "a"
	// must never see them, though "a" is a byte prefix of "ab".
	ingest(t, s,
		oneIngest("e3", at(3), "a"),
		oneIngest("e1", at(1), "a", "ab"),
		oneIngest("e10", at(10), "a"),
		oneIngest("e2", at(2), "a"),
		oneIngest("e0", at(0), "ab", "b"),
	)
	ingest(t, s, oneIngest("e1b", at(1), "a")) // same due as e1/a: ordered by id
	wantPending(t, s, map[string]int{"a": 5, "ab": 2, "b": 1})

	ref := func(id string, sec int) Ref { return Ref{ID: id, Due: at(sec)} }
	all := []Ref{ref("e1/a", 1), ref("e1b/a", 1), ref("e2/a", 2), ref("e3/a", 3)}

	// Everything due, next is the first future entry.
	wantDue(t, s, "a", at(5), 100, nil, all, at(10))
	// now equal to a due time includes it.
	wantDue(t, s, "a", at(2), 100, nil, all[:3], at(3))
	// Nothing due yet: next is the first entry.
	wantDue(t, s, "a", at(0), 100, nil, nil, at(1))
	// All due, none in the future: next is zero.
	wantDue(t, s, "a", at(20), 100, nil, append(all[:4:4], ref("e10/a", 10)), time.Time{})
	// Limit: next is the first due entry past the limit.
	wantDue(t, s, "a", at(5), 2, nil, all[:2], at(2))
	wantDue(t, s, "a", at(5), 4, nil, all, at(10))
	wantDue(t, s, "a", at(20), 5, nil, append(all[:4:4], ref("e10/a", 10)), time.Time{})

	// Skip: skipped ids are neither returned nor reported as next.
	skip := func(ids ...string) func(string) bool {
		set := map[string]bool{}
		for _, id := range ids {
			set[id] = true
		}
		return func(id string) bool { return set[id] }
	}
	wantDue(t, s, "a", at(5), 100, skip("e1b/a", "e3/a"), []Ref{ref("e1/a", 1), ref("e2/a", 2)}, at(10))
	// The limit counts returned entries only, and a skipped entry past the
	// limit is not next.
	wantDue(t, s, "a", at(5), 1, skip("e1/a"), []Ref{ref("e1b/a", 1)}, at(2))
	wantDue(t, s, "a", at(5), 1, skip("e1b/a", "e2/a"), []Ref{ref("e1/a", 1)}, at(3))
	// A skipped future entry is not next either.
	wantDue(t, s, "a", at(5), 100, skip("e10/a"), all, time.Time{})
	wantDue(t, s, "a", at(0), 100, skip("e1/a", "e1b/a"), nil, at(2))

	// Other routes see only their own entries.
	wantDue(t, s, "ab", at(5), 100, nil, []Ref{ref("e0/ab", 0), ref("e1/ab", 1)}, time.Time{})
	wantDue(t, s, "b", at(5), 100, nil, []Ref{ref("e0/b", 0)}, time.Time{})
	wantDue(t, s, "", at(5), 100, nil, nil, time.Time{})
	wantDue(t, s, "abc", at(5), 100, nil, nil, time.Time{})
}

// A delivery stored with a zero (or pre-1970) Due is due at once and must
// sort before every real due time; it must not hide behind a future entry.
func TestDueZeroTime(t *testing.T) {
	s := openStore(t, Options{})
	ingest(t, s, oneIngest("future", t0.Add(time.Hour), "r"))
	ingest(t, s, oneIngest("zero", time.Time{}, "r"))
	ingest(t, s, oneIngest("old", time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), "r"))

	refs, next := mustDue(t, s, "r", t0, 10, nil)
	var ids []string
	for _, r := range refs {
		ids = append(ids, r.ID)
	}
	if want := []string{"old/r", "zero/r"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("Due ids = %v, want %v", ids, want)
	}
	if !next.Equal(t0.Add(time.Hour)) {
		t.Fatalf("next = %s, want %s", fmtTime(next), fmtTime(t0.Add(time.Hour)))
	}
	// The Ref's Due is what a Record's ClaimedDue carries: it must find
	// the ready entry.
	for _, r := range refs {
		d := mustDelivery(t, s, r.ID)
		d.Status = StatusDelivered
		d.Attempts = 1
		d.Done = t0
		record(t, s, Outcome{Delivery: d, ClaimedDue: r.Due, Attempt: &Attempt{N: 1, Start: t0}})
	}
	wantPending(t, s, map[string]int{"r": 1})
	wantDue(t, s, "r", t0, 10, nil, nil, t0.Add(time.Hour))
}

func TestRecordReschedule(t *testing.T) {
	s := openStore(t, Options{})
	ingest(t, s, oneIngest("ev", t0, "r"))
	d := mustDelivery(t, s, "ev/r")

	next := t0.Add(time.Minute)
	d.Attempts = 1
	d.Due = next
	d.LastAttempt = t0
	d.LastStatus = 503
	d.LastClass = "retry"
	d.LastError = "service unavailable"
	a := &Attempt{N: 1, Start: t0, Duration: 150 * time.Millisecond, Status: 503,
		Class: "retry", Error: "service unavailable", Response: []byte("busy"), TraceID: "abc"}
	record(t, s, Outcome{Delivery: d, ClaimedDue: t0, Attempt: a})

	// The old ready entry is gone, the new one sits at the new Due.
	wantDue(t, s, "r", t0.Add(30*time.Second), 10, nil, nil, next)
	wantDue(t, s, "r", next, 10, nil, []Ref{{ID: "ev/r", Due: next}}, time.Time{})
	wantPending(t, s, map[string]int{"r": 1})
	if n := countPrefix(t, s, []byte{pReady, '|'}); n != 1 {
		t.Fatalf("ready index holds %d entries, want 1", n)
	}

	got := mustDelivery(t, s, "ev/r")
	if got.Status != StatusPending || got.Attempts != 1 || !got.Due.Equal(next) ||
		got.LastStatus != 503 || got.LastClass != "retry" || got.LastError != "service unavailable" ||
		!got.LastAttempt.Equal(t0) {
		t.Fatalf("Delivery after reschedule = %+v", got)
	}
	as, err := s.Attempts("ev/r")
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 {
		t.Fatalf("Attempts = %+v, want one", as)
	}
	if g := as[0]; g.N != 1 || !g.Start.Equal(t0) || g.Duration != 150*time.Millisecond || g.Status != 503 ||
		g.Class != "retry" || g.Error != "service unavailable" || string(g.Response) != "busy" || g.TraceID != "abc" {
		t.Fatalf("Attempt = %+v, want %+v", g, *a)
	}
	// Pending records carry no TTL: a delivery waits as long as it takes.
	if exp := expiresAt(t, s, deliveryKey("ev/r")); exp != 0 {
		t.Fatalf("pending delivery has a TTL (expires %d)", exp)
	}
	if ev := mustEvent(t, s, "ev"); ev.Remaining != 1 {
		t.Fatalf("event Remaining = %d after a reschedule, want 1", ev.Remaining)
	}

	// A requeue that spent no attempt (Attempt nil) moves the entry and
	// leaves the history alone.
	later := next.Add(time.Hour)
	got.Due = later
	record(t, s, Outcome{Delivery: got, ClaimedDue: next})
	wantDue(t, s, "r", later, 10, nil, []Ref{{ID: "ev/r", Due: later}}, time.Time{})
	if as, _ := s.Attempts("ev/r"); !reflect.DeepEqual(attemptNs(as), []int{1}) {
		t.Fatalf("Attempts after requeue = %v, want [1]", attemptNs(as))
	}
	// Same Due as claimed: the entry must survive its own delete.
	record(t, s, Outcome{Delivery: got, ClaimedDue: later})
	wantDue(t, s, "r", later, 10, nil, []Ref{{ID: "ev/r", Due: later}}, time.Time{})
}

func TestRecordFinalOutcomes(t *testing.T) {
	now := t0.Add(-time.Minute)
	opts := Options{
		Now:           func() time.Time { return now },
		Retention:     2 * time.Hour,
		DeadRetention: 48 * time.Hour,
	}
	s := openStore(t, opts)
	ingest(t, s, oneIngest("ev", t0, "ok", "bad"), oneIngest("other", t0, "ok"))
	wantPending(t, s, map[string]int{"ok": 2, "bad": 1})
	if ev := mustEvent(t, s, "ev"); ev.Remaining != 2 {
		t.Fatalf("Remaining = %d, want 2", ev.Remaining)
	}

	// Delivered on the second attempt.
	d := mustDelivery(t, s, "ev/ok")
	d.Attempts = 1
	d.Due = t0.Add(time.Second)
	record(t, s, Outcome{Delivery: d, ClaimedDue: t0, Attempt: &Attempt{N: 1, Start: t0, Status: 500, Class: "retry"}})
	d.Attempts = 2
	d.Status = StatusDelivered
	d.Done = t0.Add(2 * time.Second)
	d.LastStatus = 204
	d.LastClass = "ok"
	record(t, s, Outcome{Delivery: d, ClaimedDue: t0.Add(time.Second),
		Attempt: &Attempt{N: 2, Start: t0.Add(time.Second), Status: 204, Class: "ok"}})

	wantDue(t, s, "ok", t0.Add(time.Hour), 10, nil, []Ref{{ID: "other/ok", Due: t0}}, time.Time{})
	wantPending(t, s, map[string]int{"ok": 1, "bad": 1})
	got := mustDelivery(t, s, "ev/ok")
	if got.Status != StatusDelivered || got.Attempts != 2 || got.LastStatus != 204 || !got.Done.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("delivered Delivery = %+v", got)
	}
	as, err := s.Attempts("ev/ok")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(attemptNs(as), []int{1, 2}) || as[0].Status != 500 || as[1].Status != 204 {
		t.Fatalf("Attempts = %+v, want N 1 (500) and 2 (204)", as)
	}
	ev := mustEvent(t, s, "ev")
	if ev.Remaining != 1 {
		t.Fatalf("Remaining = %d after one delivery finished, want 1", ev.Remaining)
	}
	if want := now.Add(opts.Retention).UnixNano(); ev.KeepUntil != want {
		t.Fatalf("KeepUntil = %d, want %d", ev.KeepUntil, want)
	}
	// Final records expire with retention, earlier attempts included;
	// the event does not yet.
	wantTTL(t, s, deliveryKey("ev/ok"), opts.Retention)
	wantTTL(t, s, attemptKey("ev/ok", 1), opts.Retention)
	wantTTL(t, s, attemptKey("ev/ok", 2), opts.Retention)
	if exp := eventExpiresAt(t, s, "ev"); exp != 0 {
		t.Fatalf("event expires (%d) with a delivery still pending", exp)
	}

	// Dead on the first attempt.
	b := mustDelivery(t, s, "ev/bad")
	b.Attempts = 1
	b.Status = StatusDead
	b.Done = t0.Add(3 * time.Second)
	b.LastStatus = 410
	b.LastClass = "gone"
	record(t, s, Outcome{Delivery: b, ClaimedDue: t0, Attempt: &Attempt{N: 1, Start: t0, Status: 410, Class: "gone"}})

	wantPending(t, s, map[string]int{"ok": 1})
	wantDue(t, s, "bad", t0.Add(time.Hour), 10, nil, nil, time.Time{})
	if got := mustDelivery(t, s, "ev/bad"); got.Status != StatusDead || got.LastStatus != 410 {
		t.Fatalf("dead Delivery = %+v", got)
	}
	wantTTL(t, s, deliveryKey("ev/bad"), opts.DeadRetention)
	// Its first attempt was its last: it is kept in the delivery's
	// record, which expires with it, not in a record of its own.
	if keys := keysWithPrefix(t, s, attemptPrefix("ev/bad")); len(keys) != 0 {
		t.Fatalf("attempt records of ev/bad = %q, want none", keys)
	}
	if as, err := s.Attempts("ev/bad"); err != nil || len(as) != 1 || as[0].N != 1 || as[0].Status != 410 || as[0].Class != "gone" {
		t.Fatalf("Attempts(ev/bad) = %+v %v, want attempt 1 (410 gone)", as, err)
	}
	dk := deadKey("bad", t0.Add(3*time.Second), "ev/bad")
	wantTTL(t, s, dk, opts.DeadRetention)
	if keys := keysWithPrefix(t, s, []byte{pDead, '|'}); len(keys) != 1 || keys[0] != string(dk) {
		t.Fatalf("dead index = %q, want only %q", keys, dk)
	}

	ev = mustEvent(t, s, "ev")
	if ev.Remaining != 0 {
		t.Fatalf("Remaining = %d after both deliveries finished, want 0", ev.Remaining)
	}
	// The event is kept as long as its longest-kept delivery.
	if want := now.Add(opts.DeadRetention).UnixNano(); ev.KeepUntil != want {
		t.Fatalf("KeepUntil = %d, want %d", ev.KeepUntil, want)
	}
	wantEventTTL(t, s, "ev", opts.DeadRetention)
	if ev := mustEvent(t, s, "other"); ev.Remaining != 1 {
		t.Fatalf("other event Remaining = %d, want 1", ev.Remaining)
	}
}

func TestAttemptLogCap(t *testing.T) {
	s := openStore(t, Options{AttemptLog: 3})
	ingest(t, s, oneIngest("ev", t0, "r"))
	d := mustDelivery(t, s, "ev/r")
	due := t0
	for n := 1; n <= 5; n++ {
		d.Attempts = n
		claimed := due
		due = due.Add(time.Second)
		d.Due = due
		record(t, s, Outcome{Delivery: d, ClaimedDue: claimed, Attempt: &Attempt{N: n, Start: claimed, Status: 500 + n}})
	}
	as, err := s.Attempts("ev/r")
	if err != nil {
		t.Fatal(err)
	}
	if got := attemptNs(as); !reflect.DeepEqual(got, []int{3, 4, 5}) {
		t.Fatalf("after 5 attempts with AttemptLog 3: Attempts N = %v, want [3 4 5]", got)
	}
	for _, a := range as {
		if a.Status != 500+a.N {
			t.Fatalf("attempt %d has status %d, want %d", a.N, a.Status, 500+a.N)
		}
	}

	// The final attempt drops one more and must not bring back a dropped
	// one while giving the rest their TTL.
	d.Attempts = 6
	d.Status = StatusDelivered
	d.Done = due
	record(t, s, Outcome{Delivery: d, ClaimedDue: due, Attempt: &Attempt{N: 6, Start: due, Status: 200}})
	as, err = s.Attempts("ev/r")
	if err != nil {
		t.Fatal(err)
	}
	if got := attemptNs(as); !reflect.DeepEqual(got, []int{4, 5, 6}) {
		t.Fatalf("after the final attempt: Attempts N = %v, want [4 5 6]", got)
	}
	if n := countPrefix(t, s, attemptPrefix("ev/r")); n != 3 {
		t.Fatalf("attempt log holds %d keys, want 3", n)
	}
	wantPending(t, s, nil)
}

// Outcomes submitted together are committed in one group; each must see
// the other's writes (both decrement the same event).
func TestRecordConcurrentSameEvent(t *testing.T) {
	s := openStore(t, Options{})
	const n = 50
	var routes []string
	for i := 0; i < n; i++ {
		routes = append(routes, fmt.Sprintf("r%02d", i))
	}
	ingest(t, s, oneIngest("ev", t0, routes...))
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, r := range routes {
		d := mustDelivery(t, s, "ev/"+r)
		d.Status = StatusDelivered
		d.Attempts = 1
		d.Done = t0
		wg.Add(1)
		s.Record(Outcome{Delivery: d, ClaimedDue: t0, Attempt: &Attempt{N: 1}}, func(err error) {
			errs <- err
			wg.Done()
		})
	}
	waitGroup(t, &wg)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Record: %v", err)
		}
	}
	if got := mustEvent(t, s, "ev").Remaining; got != 0 {
		t.Fatalf("Remaining = %d after %d concurrent final outcomes, want 0", got, n)
	}
	wantPending(t, s, nil)
}

func TestGroupCommitConcurrent(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	const goroutines, perG = 64, 200
	var wg sync.WaitGroup
	ids := make([][]string, goroutines)
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				id := fmt.Sprintf("g%02d-%03d", g, i)
				res, err := s.Ingest(context.Background(), []Ingest{oneIngest(id, t0.Add(time.Duration(i)), "r")})
				if err != nil {
					errs <- fmt.Errorf("ingest %s: %w", id, err)
					return
				}
				if len(res) != 1 || res[0].Duplicate || res[0].ID != id {
					errs <- fmt.Errorf("ingest %s: result %+v", id, res)
					return
				}
				ids[g] = append(ids[g], res[0].ID)
			}
		}()
	}
	waitGroup(t, &wg)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := make(map[string]bool, goroutines*perG)
	for _, gids := range ids {
		for _, id := range gids {
			if seen[id] {
				t.Fatalf("id %s returned twice", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != goroutines*perG {
		t.Fatalf("%d distinct ids, want %d", len(seen), goroutines*perG)
	}
	wantPending(t, s, map[string]int{"r": goroutines * perG})
	refs, _ := mustDue(t, s, "r", t0.Add(time.Hour), goroutines*perG+1, nil)
	if len(refs) != goroutines*perG {
		t.Fatalf("Due lists %d, want %d", len(refs), goroutines*perG)
	}
	for i := 1; i < len(refs); i++ {
		if refs[i].Due.Before(refs[i-1].Due) {
			t.Fatalf("Due out of order at %d: %s after %s", i, fmtTime(refs[i].Due), fmtTime(refs[i-1].Due))
		}
	}
}

func TestSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir})
	ingest(t, s, oneIngest("ev", t0, "r"))

	s2, err := Open(Options{Dir: dir})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of an open directory succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, dir) || !strings.Contains(msg, "caddy reload") {
		t.Fatalf("second Open error %q: want it to name %s and mention 'caddy reload'", msg, dir)
	}
	// The first store is unaffected.
	ingest(t, s, oneIngest("ev2", t0, "r"))
	wantPending(t, s, map[string]int{"r": 2})

	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open with no Dir succeeded")
	}
}

func TestClosedStore(t *testing.T) {
	s := openStore(t, Options{})
	ingest(t, s, oneIngest("ev", t0, "r"))
	d := mustDelivery(t, s, "ev/r")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	bounded(t, "Ingest", func() {
		_, err := s.Ingest(context.Background(), []Ingest{oneIngest("late", t0, "r")})
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Ingest after Close: err = %v, want ErrClosed", err)
		}
	})
	// recordErr bounds its own wait.
	if err := recordErr(t, s, Outcome{Delivery: d, ClaimedDue: t0}); !errors.Is(err, ErrClosed) {
		t.Errorf("Record after Close: done(%v), want done(ErrClosed)", err)
	}
	bounded(t, "Record nil done", func() { s.Record(Outcome{Delivery: d, ClaimedDue: t0}, nil) })
	bounded(t, "reads", func() {
		if _, _, err := s.Due("r", t0, 10, nil); !errors.Is(err, ErrClosed) {
			t.Errorf("Due after Close: %v", err)
		}
		if _, err := s.Delivery("ev/r"); !errors.Is(err, ErrClosed) {
			t.Errorf("Delivery after Close: %v", err)
		}
		if _, err := s.Event("ev"); !errors.Is(err, ErrClosed) {
			t.Errorf("Event after Close: %v", err)
		}
		if _, err := s.Attempts("ev/r"); !errors.Is(err, ErrClosed) {
			t.Errorf("Attempts after Close: %v", err)
		}
		if _, err := s.Pending(); !errors.Is(err, ErrClosed) {
			t.Errorf("Pending after Close: %v", err)
		}
	})
	bounded(t, "Close again", func() {
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// Close waits for look-ups in progress instead of closing the database
// under them (Badger panics in a running iterator), and a skip callback
// may call back into the store while Close waits.
func TestCloseWaitsForReads(t *testing.T) {
	s := openStore(t, Options{})
	ingest(t, s, oneIngest("e1", t0, "r"), oneIngest("e2", t0.Add(time.Second), "r"), oneIngest("e3", t0.Add(2*time.Second), "r"))

	inSkip := make(chan struct{})
	release := make(chan struct{})
	type dueResult struct {
		refs    []Ref
		next    time.Time
		err     error
		nested  error
		skipped int
	}
	got := make(chan dueResult, 1)
	go func() {
		var r dueResult
		r.refs, r.next, r.err = s.Due("r", t0.Add(time.Hour), 10, func(id string) bool {
			r.skipped++
			if id == "e1/r" {
				close(inSkip)
				<-release
				_, r.nested = s.Delivery(id)
			}
			return false
		})
		got <- r
	}()
	<-inSkip
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a Due scan was still running", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	var r dueResult
	select {
	case r = <-got:
	case <-time.After(wait):
		t.Fatal("Due did not return after its skip callback did")
	}
	if r.err != nil {
		t.Fatalf("Due begun before Close: %v", r.err)
	}
	want := []Ref{{ID: "e1/r", Due: t0}, {ID: "e2/r", Due: t0.Add(time.Second)}, {ID: "e3/r", Due: t0.Add(2 * time.Second)}}
	if !refsEqual(r.refs, want) || !r.next.IsZero() {
		t.Fatalf("Due begun before Close = %s, %s; want %s, zero", fmtRefs(r.refs), fmtTime(r.next), fmtRefs(want))
	}
	if !errors.Is(r.nested, ErrClosed) {
		t.Fatalf("look-up from a skip callback after Close began: %v, want ErrClosed", r.nested)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not return after the scan ended")
	}
}

// Close drains what was submitted: every ingest that returned without
// error is on disk, every other one returned ErrClosed.
func TestCloseUnderLoad(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	const writers = 16
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked []string
		bad   []error
	)
	started := make(chan struct{}, writers)
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%02d-%05d", g, i)
				_, err := s.Ingest(context.Background(), []Ingest{oneIngest(id, t0, "r")})
				if i == 5 {
					started <- struct{}{}
				}
				mu.Lock()
				switch {
				case err == nil:
					acked = append(acked, id)
				case !errors.Is(err, ErrClosed):
					bad = append(bad, err)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	// Readers run alongside: they must get results or ErrClosed, never
	// crash on a closing database.
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, _, err := s.Due("r", t0, 50, nil)
				if err == nil {
					_, err = s.Pending()
				}
				if err == nil {
					_, err = s.Delivery(fmt.Sprintf("w%02d-00000/r", g))
					if errors.Is(err, ErrNotFound) {
						err = nil
					}
				}
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						mu.Lock()
						bad = append(bad, err)
						mu.Unlock()
					}
					return
				}
			}
		}()
	}
	for g := 0; g < writers; g++ {
		<-started
	}
	bounded(t, "Close", func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	waitGroup(t, &wg)
	if len(bad) > 0 {
		t.Fatalf("calls racing Close failed with other errors than ErrClosed: %v", bad[0])
	}
	s = openStore(t, Options{Dir: dir})
	if p := mustPending(t, s); p["r"] != len(acked) {
		t.Fatalf("Pending = %d after reopen, want %d acked", p["r"], len(acked))
	}
	for _, id := range acked {
		mustDelivery(t, s, id+"/r")
	}
}

func TestTooLarge(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	const n = 30000 // two writes apiece: well past one transaction
	big := Ingest{Event: newEvent("big", "{}")}
	for i := 0; i < n; i++ {
		big.Deliveries = append(big.Deliveries, newDelivery(fmt.Sprintf("big/%05d", i), "big", "r", t0))
	}

	// Submitted with small ingests, so it likely shares their group: the
	// small ones must not fail with it.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Ingest(context.Background(), []Ingest{oneIngest(fmt.Sprintf("small%02d", i), t0, "s")})
			errs <- err
		}()
	}
	_, err := s.Ingest(context.Background(), []Ingest{big})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Ingest of %d deliveries: err = %v, want ErrTooLarge", n, err)
	}
	waitGroup(t, &wg)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("small ingest beside the big one: %v", err)
		}
	}
	wantGone(t, s, "big", "big/00000", fmt.Sprintf("big/%05d", n-1))
	wantPending(t, s, map[string]int{"s": 20})

	// Later ingests work.
	ingest(t, s, oneIngest("after", t0, "r"))
	wantPending(t, s, map[string]int{"s": 20, "r": 1})

	// A large payload is not too large: it goes to the value log and
	// comes back byte for byte.
	data := make([]byte, 20<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	in := oneIngest("huge", t0, "r")
	in.Event.Data = data
	ingest(t, s, in)
	if ev := mustEvent(t, s, "huge"); string(ev.Data) != string(data) {
		t.Fatalf("20 MiB payload changed (len %d)", len(ev.Data))
	}
}

func TestIngestContextCancelled(t *testing.T) {
	s := openStore(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A cancelled context may or may not win against a free channel
	// slot; either way the call returns and, if it returned nil, the
	// write is on disk.
	res, err := s.Ingest(ctx, []Ingest{oneIngest("ev", t0, "r")})
	switch {
	case err == nil:
		if res[0].ID != "ev" {
			t.Fatalf("result = %+v", res)
		}
		mustDelivery(t, s, "ev/r")
	case errors.Is(err, context.Canceled):
		wantGone(t, s, "ev", "ev/r")
	default:
		t.Fatalf("err = %v", err)
	}
}

// TestLargestBatchFitsOneTransaction: the ingest handler's largest batch
// (max_batch 1000) of events matching ten routes each is one Ingest, and
// must fit in one transaction of the outbox's memtable size.
func TestLargestBatchFitsOneTransaction(t *testing.T) {
	s := openStore(t, Options{})
	routes := make([]string, 10)
	for i := range routes {
		routes[i] = fmt.Sprintf("route-number-%02d", i)
	}
	batch := make([]Ingest, 1000)
	for i := range batch {
		batch[i] = oneIngest(fmt.Sprintf("evt_%026d", i), t0, routes...)
		batch[i].Dedupe = batch[i].Event.ID
		batch[i].Event.Data = []byte(`"` + strings.Repeat("x", 1000) + `"`)
	}
	res := ingest(t, s, batch...)
	for i, r := range res {
		if r.Duplicate {
			t.Fatalf("element %d is a duplicate", i)
		}
	}
}

// TestFirstAttemptKeptInDeliveryRecord: a final first attempt lives in
// the delivery's record (one write fewer per delivery); a requeue moves
// it to the history the next attempts follow, which then expires with
// the delivery; an attempt too long for the record keeps a record of its
// own.
func TestFirstAttemptKeptInDeliveryRecord(t *testing.T) {
	opts := Options{Retention: time.Hour, DeadRetention: 2 * time.Hour}
	s := openStore(t, opts)
	for _, id := range []string{"e1", "e2"} {
		ingest(t, s, Ingest{Event: &Event{ID: id, Type: "t", Received: t0}, Deliveries: []*Delivery{newDelivery(id+"/r", id, "r", t0)}})
	}
	outcome := func(id string, n, code int, resp []byte) Outcome {
		t.Helper()
		d := mustDelivery(t, s, id)
		claimed := d.Due
		d.Attempts, d.LastStatus, d.Done = n, code, t0.Add(time.Duration(n)*time.Second)
		d.Status = StatusDelivered
		if code >= 400 {
			d.Status = StatusDead
		}
		return Outcome{Delivery: d, ClaimedDue: claimed,
			Attempt: &Attempt{N: n, Start: t0.Add(time.Duration(n) * time.Second), Status: code, Response: resp}}
	}
	final := func(id string, n, code int, resp []byte) {
		t.Helper()
		record(t, s, outcome(id, n, code, resp))
	}
	history := func(id string) string {
		t.Helper()
		as, err := s.Attempts(id)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range as {
			out = append(out, fmt.Sprintf("%d:%d", a.N, a.Status))
		}
		return fmt.Sprint(out)
	}
	records := func(id string) int { return len(keysWithPrefix(t, s, attemptPrefix(id))) }

	final("e1/r", 1, 410, []byte("gone"))
	if n, h := records("e1/r"), history("e1/r"); n != 0 || h != "[1:410]" {
		t.Fatalf("e1/r after its final first attempt: %d attempt records, history %s; want 0 and [1:410]", n, h)
	}

	// Requeued, the attempt joins the history; the record no longer
	// holds it, and the next attempt follows it. Both then expire with
	// the delivery.
	if rq, err := s.Requeue([]string{"e1/r"}, t0.Add(time.Minute)); err != nil || len(rq) != 1 {
		t.Fatalf("requeue: %v %v", rq, err)
	}
	if d := mustDelivery(t, s, "e1/r"); d.attempt != nil || d.Status != StatusPending {
		t.Fatalf("requeued e1/r = %+v, want pending without its attempt", d)
	}
	if n, h := records("e1/r"), history("e1/r"); n != 1 || h != "[1:410]" {
		t.Fatalf("e1/r after the requeue: %d attempt records, history %s; want 1 and [1:410]", n, h)
	}
	final("e1/r", 2, 200, nil)
	if h := history("e1/r"); h != "[1:410 2:200]" {
		t.Fatalf("e1/r after its second attempt: history %s, want [1:410 2:200]", h)
	}
	wantTTL(t, s, attemptKey("e1/r", 1), opts.Retention)
	wantTTL(t, s, attemptKey("e1/r", 2), opts.Retention)

	// A response excerpt that would push the record into the value log
	// keeps the attempt in a record of its own.
	final("e2/r", 1, 200, bytes.Repeat([]byte("x"), valueThreshold))
	if n, h := records("e2/r"), history("e2/r"); n != 1 || h != "[1:200]" {
		t.Fatalf("e2/r with a long response: %d attempt records, history %s; want 1 and [1:200]", n, h)
	}
	if d := mustDelivery(t, s, "e2/r"); d.attempt != nil {
		t.Fatal("e2/r's record holds its long attempt")
	}
	wantTTL(t, s, attemptKey("e2/r", 1), opts.Retention)

	// At the boundary: a record one byte under the threshold holds its
	// attempt; one that reaches it (Badger would put it in the value
	// log) does not.
	for i, want := range []int{0, 1} {
		id := fmt.Sprintf("b%d", i)
		ingest(t, s, Ingest{Event: &Event{ID: id, Type: "t", Received: t0}, Deliveries: []*Delivery{newDelivery(id+"/r", id, "r", t0)}})
		size := func(n int) int {
			o := outcome(id+"/r", 1, 200, bytes.Repeat([]byte("x"), n))
			o.Delivery.attempt = o.Attempt
			return len(encodeDelivery(o.Delivery))
		}
		n := 0
		for size(n) < valueThreshold-1+i {
			n++
		}
		if size(n) != valueThreshold-1+i {
			t.Fatalf("no response length makes %s's record %d bytes", id, valueThreshold-1+i)
		}
		final(id+"/r", 1, 200, bytes.Repeat([]byte("x"), n))
		if got := records(id + "/r"); got != want {
			t.Fatalf("record of %d bytes with its attempt: %d attempt records, want %d", size(n), got, want)
		}
	}
}
