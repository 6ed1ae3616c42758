package persist

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// orderedIngest is one event with one delivery on route "r" under key.
func orderedIngest(id, key string, due time.Time) Ingest {
	in := Ingest{Event: newEvent("evt-"+id, `{}`)}
	d := newDelivery(id, "evt-"+id, "r", due)
	d.OrderKey = key
	in.Deliveries = []*Delivery{d}
	in.Event.Routes = []string{"r"}
	return in
}

// finishOrdered records d (as read from s) as final with the given status.
func finishOrdered(t *testing.T, s *Badger, id string, st Status, at time.Time) {
	t.Helper()
	d := mustDelivery(t, s, id)
	claimed := d.Due
	d.Status, d.Done, d.Attempts = st, at, d.Attempts+1
	record(t, s, Outcome{Delivery: d, ClaimedDue: claimed, Attempt: &Attempt{N: d.Attempts, Start: at}})
}

func dueIDs(t *testing.T, s *Badger, now time.Time) []string {
	t.Helper()
	refs, _ := mustDue(t, s, "r", now, 100, nil)
	var ids []string
	for _, r := range refs {
		ids = append(ids, r.ID)
	}
	return ids
}

func wantIDs(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

func TestOrderedSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	now := t0.Add(time.Hour)
	s := openStore(t, Options{Dir: dir, Now: func() time.Time { return now }})
	for i := 1; i <= 3; i++ {
		ingest(t, s, orderedIngest(fmt.Sprintf("d%d", i), "k", t0))
	}
	d1 := mustDelivery(t, s, "d1")
	d1.Attempts, d1.Due = 1, now.Add(time.Minute)
	record(t, s, Outcome{Delivery: d1, ClaimedDue: t0, Attempt: &Attempt{N: 1, Start: now}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, Options{Dir: dir, Now: func() time.Time { return now }})
	// d2 and d3 are due earlier than d1 but are not in the ready index.
	wantIDs(t, "due after reopen", dueIDs(t, s, now.Add(time.Hour)), "d1")
	wantPending(t, s, map[string]int{"r": 3})
	finishOrdered(t, s, "d1", StatusDelivered, now)
	wantIDs(t, "due after d1", dueIDs(t, s, now), "d2")
}

// Concurrent ingests and outcomes of one key land in shared commit
// groups: the sequence still has exactly one delivery in the ready index
// until all are final.
func TestOrderedConcurrentGroups(t *testing.T) {
	now := t0.Add(time.Hour)
	s := openStore(t, Options{Now: func() time.Time { return now }})
	const n = 200
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := orderedIngest(fmt.Sprintf("d%04d", i), "k", t0)
			if _, err := s.Ingest(context.Background(), []Ingest{in}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	wantPending(t, s, map[string]int{"r": n})
	done := 0
	for done < n {
		ids := dueIDs(t, s, now)
		if len(ids) != 1 {
			t.Fatalf("after %d final: due %v, want exactly one", done, ids)
		}
		// Finish it while new ingests of other keys share the group.
		extra := orderedIngest(fmt.Sprintf("x%04d", done), fmt.Sprintf("other-%d", done), t0)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			ingest(t, s, extra)
		}()
		finishOrdered(t, s, ids[0], StatusDelivered, now)
		wg.Wait()
		finishOrdered(t, s, extra.Deliveries[0].ID, StatusDelivered, now)
		done++
	}
	wantIDs(t, "due at the end", dueIDs(t, s, now))
	wantPending(t, s, map[string]int{})
}

func TestOrderedKeyTooLong(t *testing.T) {
	s := openStore(t, Options{})
	in := orderedIngest("d1", string(make([]byte, MaxOrderKeyLen+1)), t0)
	if _, err := s.Ingest(context.Background(), []Ingest{in}); err == nil {
		t.Fatal("Ingest took an order key over MaxOrderKeyLen")
	}
}

func TestRouteStateAndDeadCounts(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir})
	if st, err := s.RouteStates(); err != nil || len(st) != 0 {
		t.Fatalf("RouteStates on an empty outbox = %v, %v", st, err)
	}
	a := RouteState{Paused: true, PausedReason: "endpoint answered 410 Gone"}
	b := RouteState{VerifiedURL: "https://example.com/{env.X}",
		Circuit: CircuitState{OpenedAt: t0.UnixNano(), Cooldown: 40 * time.Second, Failures: 13}}
	if err := s.SetRouteState("a", a); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRouteState("b", b); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRouteState("c", RouteState{Paused: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRouteState("c", RouteState{}); err != nil {
		t.Fatal(err)
	}

	ingest(t, s, oneIngest("e1", t0, "a", "b"), oneIngest("e2", t0, "a"))
	for _, id := range []string{"e1/a", "e2/a", "e1/b"} {
		finishOrdered(t, s, id, StatusDead, t0)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Options{Dir: dir})
	st, err := s.RouteStates()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st["a"] != a || st["b"] != b {
		t.Fatalf("RouteStates after reopen = %+v", st)
	}
	dead, err := s.DeadCounts(nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(dead) != "map[a:2 b:1]" {
		t.Fatalf("DeadCounts = %v, want map[a:2 b:1]", dead)
	}
	if err := s.SetRouteState(string(make([]byte, 300)), a); err == nil {
		t.Error("SetRouteState took a route name over 255 bytes")
	}
	s.Close()
	if err := s.SetRouteState("a", a); err != ErrClosed {
		t.Errorf("SetRouteState after Close = %v, want ErrClosed", err)
	}
}
