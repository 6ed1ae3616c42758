package persist

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// finish records a final outcome (one more attempt) for a pending
// delivery, ending at done.
func finish(t testing.TB, s *Badger, id string, st Status, done time.Time) *Delivery {
	t.Helper()
	d := mustDelivery(t, s, id)
	claimed := d.Due
	d.Attempts++
	d.Status = st
	d.Done = done
	d.LastAttempt = done
	d.LastStatus = 200
	if st == StatusDead {
		d.LastStatus, d.LastClass, d.LastError = 400, "http_4xx", "endpoint answered 400"
	}
	record(t, s, Outcome{Delivery: d, ClaimedDue: claimed,
		Attempt: &Attempt{N: d.Attempts, Start: done, Status: d.LastStatus, Class: d.LastClass}})
	return d
}

// retryLater records a failed attempt that leaves the delivery pending,
// due at due.
func retryLater(t testing.TB, s *Badger, id string, at, due time.Time) {
	t.Helper()
	d := mustDelivery(t, s, id)
	claimed := d.Due
	d.Attempts++
	d.Due = due
	d.LastStatus, d.LastClass = 503, "http_5xx"
	record(t, s, Outcome{Delivery: d, ClaimedDue: claimed,
		Attempt: &Attempt{N: d.Attempts, Start: at, Status: 503, Class: "http_5xx"}})
}

func ids(ds []*Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func mustList(t testing.TB, s *Badger, f ListFilter) ([]string, string) {
	t.Helper()
	ds, next, err := s.ListDeliveries(f)
	if err != nil {
		t.Fatalf("ListDeliveries(%+v): %v", f, err)
	}
	return ids(ds), next
}

// listAll pages through a listing with the given limit and returns every
// id, checking that no page is larger than the limit.
func listAll(t testing.TB, s *Badger, f ListFilter) []string {
	t.Helper()
	var all []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("listing %+v does not end", f)
		}
		got, next := mustList(t, s, f)
		if f.Limit > 0 && len(got) > f.Limit {
			t.Fatalf("page of %d with limit %d", len(got), f.Limit)
		}
		all = append(all, got...)
		if next == "" {
			return all
		}
		f.Cursor = next
	}
}

func TestListPendingByRouteInDueOrder(t *testing.T) {
	s := openStore(t, Options{})
	// Route names of different lengths: their index ranges are ordered by
	// length first, the listing by name.
	routes := []string{"c", "bb", "a"}
	var batch []Ingest
	for i := 0; i < 5; i++ {
		for _, r := range routes {
			id := fmt.Sprintf("e%d-%s", i, r)
			// Due times in reverse of ingest order.
			batch = append(batch, oneIngest(id, t0.Add(time.Duration(10-i)*time.Second), r))
		}
	}
	ingest(t, s, batch...)

	var want []string
	for _, r := range []string{"a", "bb", "c"} {
		for i := 4; i >= 0; i-- {
			want = append(want, fmt.Sprintf("e%d-%s/%s", i, r, r))
		}
	}
	for _, limit := range []int{0, 1, 2, 5, 7, 1000} {
		got := listAll(t, s, ListFilter{Status: StatusPending, Limit: limit})
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("limit %d: pending = %v\nwant %v", limit, got, want)
		}
	}
	got := listAll(t, s, ListFilter{Route: "bb", Status: StatusPending, Limit: 2})
	if !reflect.DeepEqual(got, want[5:10]) {
		t.Fatalf("route bb: %v, want %v", got, want[5:10])
	}
	// An exactly full last page has no next cursor.
	if got, next := mustList(t, s, ListFilter{Route: "a", Status: StatusPending, Limit: 5}); len(got) != 5 || next != "" {
		t.Fatalf("full page: %v next %q, want 5 and no cursor", got, next)
	}
	if got, next := mustList(t, s, ListFilter{Route: "nope", Status: StatusPending}); len(got) != 0 || next != "" {
		t.Fatalf("unknown route: %v %q", got, next)
	}
	ds, _, err := s.ListDeliveries(ListFilter{Route: "a", Status: StatusPending, Limit: 1})
	if err != nil || len(ds) != 1 || ds[0].Status != StatusPending || ds[0].EventID != "e4-a" || !ds[0].Due.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("first delivery %+v, %v", ds, err)
	}
}

func TestListCursorSurvivesChanges(t *testing.T) {
	s := openStore(t, Options{})
	for i := 0; i < 6; i++ {
		ingest(t, s, oneIngest(fmt.Sprintf("e%d", i), t0.Add(time.Duration(i)*time.Second), "r"))
	}
	got, next := mustList(t, s, ListFilter{Status: StatusPending, Limit: 3})
	if !reflect.DeepEqual(got, []string{"e0/r", "e1/r", "e2/r"}) || next == "" {
		t.Fatalf("page 1: %v %q", got, next)
	}
	// The first page's deliveries finish and an earlier one arrives: the
	// second page neither repeats nor skips what was after the first.
	finish(t, s, "e0/r", StatusDelivered, t0)
	finish(t, s, "e1/r", StatusDelivered, t0)
	ingest(t, s, oneIngest("early", t0.Add(-time.Hour), "r"))
	got, next = mustList(t, s, ListFilter{Status: StatusPending, Limit: 3, Cursor: next})
	if !reflect.DeepEqual(got, []string{"e3/r", "e4/r", "e5/r"}) || next != "" {
		t.Fatalf("page 2: %v %q", got, next)
	}
}

func TestListFinalDeliveries(t *testing.T) {
	s := openStore(t, Options{})
	for i := 0; i < 4; i++ {
		ingest(t, s, oneIngest(fmt.Sprintf("e%d", i), t0, "r", "s"))
	}
	// Finished in an order unlike their ids.
	finish(t, s, "e2/r", StatusDead, t0.Add(1*time.Second))
	finish(t, s, "e0/r", StatusDead, t0.Add(2*time.Second))
	finish(t, s, "e1/r", StatusDelivered, t0.Add(3*time.Second))
	finish(t, s, "e3/s", StatusDelivered, t0.Add(4*time.Second))
	finish(t, s, "e0/s", StatusDelivered, t0.Add(5*time.Second))
	finish(t, s, "e1/s", StatusDead, t0.Add(6*time.Second))

	cases := []struct {
		f    ListFilter
		want []string
	}{
		{ListFilter{Status: StatusDead}, []string{"e2/r", "e0/r", "e1/s"}},
		{ListFilter{Status: StatusDead, Route: "r"}, []string{"e2/r", "e0/r"}},
		{ListFilter{Status: StatusDelivered}, []string{"e1/r", "e3/s", "e0/s"}},
		{ListFilter{Status: StatusDelivered, Route: "s"}, []string{"e3/s", "e0/s"}},
		{ListFilter{Status: StatusPending}, []string{"e3/r", "e2/s"}},
		// Every state: the records in id order.
		{ListFilter{}, []string{"e0/r", "e0/s", "e1/r", "e1/s", "e2/r", "e2/s", "e3/r", "e3/s"}},
		{ListFilter{Route: "s"}, []string{"e0/s", "e1/s", "e2/s", "e3/s"}},
	}
	for _, c := range cases {
		for _, limit := range []int{1, 2, 100} {
			c.f.Limit = limit
			if got := listAll(t, s, c.f); !reflect.DeepEqual(got, c.want) {
				t.Errorf("%+v: %v, want %v", c.f, got, c.want)
			}
		}
	}
	ds, _, err := s.ListDeliveries(ListFilter{Status: StatusDead, Route: "s"})
	if err != nil || len(ds) != 1 || ds[0].Status != StatusDead || ds[0].LastClass != "http_4xx" || ds[0].Attempts != 1 {
		t.Fatalf("dead delivery %+v, %v", ds, err)
	}
}

func TestListRejectsBadInput(t *testing.T) {
	s := openStore(t, Options{})
	for i := 0; i < 3; i++ {
		ingest(t, s, oneIngest(fmt.Sprintf("e%d", i), t0, "r", "s"))
		finish(t, s, fmt.Sprintf("e%d/r", i), StatusDead, t0)
	}
	_, pendingNext := mustList(t, s, ListFilter{Status: StatusPending, Route: "s", Limit: 1})
	_, deadNext := mustList(t, s, ListFilter{Status: StatusDead, Route: "r", Limit: 1})
	_, allNext := mustList(t, s, ListFilter{Limit: 1})
	if pendingNext == "" || deadNext == "" || allNext == "" {
		t.Fatalf("want cursors, got %q %q %q", pendingNext, deadNext, allNext)
	}
	bad := []struct {
		name string
		f    ListFilter
		want error
	}{
		{"garbage cursor", ListFilter{Status: StatusPending, Cursor: "%%%"}, ErrBadCursor},
		{"short cursor", ListFilter{Status: StatusPending, Cursor: "AQE"}, ErrBadCursor},
		{"forged cursor", ListFilter{Status: StatusPending, Cursor: encodeCursor(StatusPending, []byte("e|x12345678"))}, ErrBadCursor},
		{"cursor of another status", ListFilter{Status: StatusPending, Cursor: deadNext}, ErrBadCursor},
		{"cursor of another route", ListFilter{Status: StatusPending, Route: "r", Cursor: pendingNext}, ErrBadCursor},
		{"index cursor for every state", ListFilter{Cursor: pendingNext}, ErrBadCursor},
		{"record cursor for an index", ListFilter{Status: StatusDead, Cursor: allNext}, ErrBadCursor},
		{"limit too big", ListFilter{Limit: MaxListLimit + 1}, ErrBadFilter},
		{"negative limit", ListFilter{Limit: -1}, ErrBadFilter},
		{"unknown status", ListFilter{Status: 9}, ErrBadFilter},
		{"long route", ListFilter{Route: strings.Repeat("r", 300)}, ErrBadFilter},
	}
	for _, c := range bad {
		if _, _, err := s.ListDeliveries(c.f); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	// A cursor without a route filter is good for the route it is in.
	if _, _, err := s.ListDeliveries(ListFilter{Status: StatusPending, Route: "s", Cursor: pendingNext}); err != nil {
		t.Errorf("cursor reused with its own route: %v", err)
	}
}

func TestListEveryStateIsBounded(t *testing.T) {
	s := openStore(t, Options{})
	var batch []Ingest
	for i := 0; i < maxListScan+10; i++ {
		batch = append(batch, oneIngest(fmt.Sprintf("e%06d", i), t0, "busy"))
		if len(batch) == 1000 {
			ingest(t, s, batch...)
			batch = nil
		}
	}
	ingest(t, s, batch...)
	ingest(t, s, oneIngest("z", t0, "rare"))
	// The rare route's one record is past the scan bound: the first page
	// is empty but says where to go on.
	got, next := mustList(t, s, ListFilter{Route: "rare"})
	if len(got) != 0 || next == "" {
		t.Fatalf("first page %v, next %q; want empty with a cursor", got, next)
	}
	got, next = mustList(t, s, ListFilter{Route: "rare", Cursor: next})
	if !reflect.DeepEqual(got, []string{"z/rare"}) || next != "" {
		t.Fatalf("second page %v, next %q", got, next)
	}
}

func TestReplayIDs(t *testing.T) {
	s := openStore(t, Options{})
	for i := 0; i < 6; i++ {
		ingest(t, s, oneIngest(fmt.Sprintf("e%d", i), t0, "r", "s"))
		finish(t, s, fmt.Sprintf("e%d/r", i), StatusDead, t0.Add(time.Duration(i)*time.Minute))
	}
	finish(t, s, "e0/s", StatusDelivered, t0)
	finish(t, s, "e1/s", StatusDead, t0)

	sel := func(status Status, since, until time.Time, limit int) []string {
		t.Helper()
		var all []string
		cursor := ""
		for {
			got, next, err := s.ReplayIDs("r", status, since, until, cursor, limit)
			if err != nil {
				t.Fatalf("ReplayIDs: %v", err)
			}
			if len(got) > limit {
				t.Fatalf("%d ids with limit %d", len(got), limit)
			}
			all = append(all, got...)
			if next == "" {
				return all
			}
			cursor = next
		}
	}
	all := []string{"e0/r", "e1/r", "e2/r", "e3/r", "e4/r", "e5/r"}
	if got := sel(StatusDead, time.Time{}, time.Time{}, 100); !reflect.DeepEqual(got, all) {
		t.Fatalf("all dead: %v", got)
	}
	if got := sel(StatusDead, time.Time{}, time.Time{}, 4); !reflect.DeepEqual(got, all) {
		t.Fatalf("all dead in pages of 4: %v", got)
	}
	if got := sel(StatusDead, t0.Add(2*time.Minute), t0.Add(4*time.Minute), 1); !reflect.DeepEqual(got, all[2:4]) {
		t.Fatalf("[2m, 4m): %v", got)
	}
	if got := sel(StatusDelivered, time.Time{}, time.Time{}, 10); len(got) != 0 {
		t.Fatalf("route r has no delivered deliveries: %v", got)
	}
	got, _, err := s.ReplayIDs("s", StatusDelivered, time.Time{}, time.Time{}, "", 10)
	if err != nil || !reflect.DeepEqual(got, []string{"e0/s"}) {
		t.Fatalf("delivered of s: %v %v", got, err)
	}

	// Requeueing a page before asking for the next leaves the cursor good.
	page, next, err := s.ReplayIDs("r", StatusDead, time.Time{}, time.Time{}, "", 2)
	if err != nil || next == "" {
		t.Fatal(page, next, err)
	}
	if res, err := s.Requeue(page, t0); err != nil || len(res) != 2 {
		t.Fatalf("Requeue: %v %v", res, err)
	}
	page, _, err = s.ReplayIDs("r", StatusDead, time.Time{}, time.Time{}, next, 2)
	if err != nil || !reflect.DeepEqual(page, all[2:4]) {
		t.Fatalf("after requeue: %v %v", page, err)
	}

	for _, c := range []struct {
		name   string
		route  string
		status Status
		cursor string
		limit  int
	}{
		{"pending", "r", StatusPending, "", 1},
		{"no status", "r", 0, "", 1},
		{"no route", "", StatusDead, "", 1},
		{"no limit", "r", StatusDead, "", 0},
		{"bad cursor", "r", StatusDead, "nope", 1},
		{"cursor of another route", "s", StatusDead, next, 1},
	} {
		if _, _, err := s.ReplayIDs(c.route, c.status, time.Time{}, time.Time{}, c.cursor, c.limit); !errors.Is(err, ErrBadFilter) && !errors.Is(err, ErrBadCursor) {
			t.Errorf("%s: err = %v, want a filter or cursor error", c.name, err)
		}
	}
}

func TestRequeueDead(t *testing.T) {
	now := t0.Add(time.Hour)
	opts := Options{Now: func() time.Time { return now }, Retention: time.Hour, DeadRetention: 48 * time.Hour}
	s := openStore(t, opts)
	ingest(t, s, oneIngest("ev", t0, "r", "ok"))
	retryLater(t, s, "ev/r", t0, t0.Add(time.Minute))
	dead := finish(t, s, "ev/r", StatusDead, t0.Add(2*time.Minute))
	finish(t, s, "ev/ok", StatusDelivered, t0)
	if ev := mustEvent(t, s, "ev"); ev.Remaining != 0 || eventExpiresAt(t, s, "ev") == 0 {
		t.Fatalf("event before requeue: %+v", ev)
	}
	wantPending(t, s, map[string]int{})

	res, err := s.Requeue([]string{"ev/r", "unknown"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Requeued{{ID: "ev/r", Route: "r", Was: StatusDead}}; !reflect.DeepEqual(res, want) {
		t.Fatalf("Requeue = %+v, want %+v", res, want)
	}
	d := mustDelivery(t, s, "ev/r")
	if d.Status != StatusPending || !d.Due.Equal(now) || !d.Done.IsZero() || d.Attempts != 2 ||
		d.LastStatus != dead.LastStatus || d.LastClass != "http_4xx" {
		t.Fatalf("requeued delivery %+v", d)
	}
	// Its retry schedule starts again from the requeue, after the two
	// attempts it had made.
	if !d.ScheduleStart.Equal(now) || d.ScheduleBase != 2 {
		t.Fatalf("requeued delivery's schedule starts at %s after %d attempts, want %s after 2", d.ScheduleStart, d.ScheduleBase, now)
	}
	if exp := expiresAt(t, s, deliveryKey("ev/r")); exp != 0 {
		t.Fatalf("pending delivery still expires at %d", exp)
	}
	wantPending(t, s, map[string]int{"r": 1})
	wantDue(t, s, "r", now, 10, nil, []Ref{{ID: "ev/r", Due: now}}, time.Time{})
	if n := countPrefix(t, s, []byte{pDead, '|'}); n != 0 {
		t.Fatalf("%d dead index entries left", n)
	}
	ev := mustEvent(t, s, "ev")
	if ev.Remaining != 1 || eventExpiresAt(t, s, "ev") != 0 {
		t.Fatalf("event after requeue: Remaining %d, expires %d", ev.Remaining, eventExpiresAt(t, s, "ev"))
	}
	if got, _ := mustList(t, s, ListFilter{Status: StatusDead}); len(got) != 0 {
		t.Fatalf("still listed as dead: %v", got)
	}

	// The next attempt is number 3 and the history is whole.
	finish(t, s, "ev/r", StatusDelivered, now)
	as, err := s.Attempts("ev/r")
	if err != nil || !reflect.DeepEqual(attemptNs(as), []int{1, 2, 3}) {
		t.Fatalf("attempts %v %v", attemptNs(as), err)
	}
	if ev := mustEvent(t, s, "ev"); ev.Remaining != 0 {
		t.Fatalf("Remaining = %d after the replayed delivery finished", ev.Remaining)
	}
	wantEventTTL(t, s, "ev", opts.DeadRetention) // KeepUntil keeps the longest
	wantTTL(t, s, deliveryKey("ev/r"), opts.Retention)
	if got, _ := mustList(t, s, ListFilter{Status: StatusDelivered, Route: "r"}); !reflect.DeepEqual(got, []string{"ev/r"}) {
		t.Fatalf("delivered listing %v", got)
	}
	wantPending(t, s, map[string]int{})
}

func TestRequeueDelivered(t *testing.T) {
	s := openStore(t, Options{})
	ingest(t, s, oneIngest("ev", t0, "r"))
	finish(t, s, "ev/r", StatusDelivered, t0)
	res, err := s.Requeue([]string{"ev/r"}, t0.Add(time.Hour))
	if err != nil || len(res) != 1 || res[0].Was != StatusDelivered {
		t.Fatalf("Requeue = %+v, %v", res, err)
	}
	if n := countPrefix(t, s, []byte{pDone, '|'}); n != 0 {
		t.Fatalf("%d delivered index entries left", n)
	}
	if d := mustDelivery(t, s, "ev/r"); d.Status != StatusPending || d.Attempts != 1 ||
		!d.ScheduleStart.Equal(t0.Add(time.Hour)) || d.ScheduleBase != 1 {
		t.Fatalf("delivery %+v", d)
	}
	if ev := mustEvent(t, s, "ev"); ev.Remaining != 1 {
		t.Fatalf("Remaining %d", ev.Remaining)
	}
	// Requeueing a pending delivery that is already due changes nothing
	// (nor does it restart its schedule).
	res, err = s.Requeue([]string{"ev/r"}, t0.Add(2*time.Hour))
	if err != nil || len(res) != 1 || res[0].Was != StatusPending {
		t.Fatalf("second Requeue = %+v, %v", res, err)
	}
	if d := mustDelivery(t, s, "ev/r"); !d.ScheduleStart.Equal(t0.Add(time.Hour)) {
		t.Fatalf("requeueing a pending delivery moved its schedule start to %s", d.ScheduleStart)
	}
	wantDue(t, s, "r", t0.Add(3*time.Hour), 10, nil, []Ref{{ID: "ev/r", Due: t0.Add(time.Hour)}}, time.Time{})
	if ev := mustEvent(t, s, "ev"); ev.Remaining != 1 {
		t.Fatalf("Remaining %d after requeueing a pending delivery", ev.Remaining)
	}
}

func TestRequeuePendingMovesItsDueTime(t *testing.T) {
	s := openStore(t, Options{})
	ingest(t, s, oneIngest("ev", t0, "r"))
	retryLater(t, s, "ev/r", t0, t0.Add(time.Hour))
	res, err := s.Requeue([]string{"ev/r"}, t0.Add(time.Minute))
	if err != nil || len(res) != 1 || res[0].Was != StatusPending {
		t.Fatalf("Requeue = %+v, %v", res, err)
	}
	if keys := keysWithPrefix(t, s, []byte{pReady, '|'}); len(keys) != 1 || keys[0] != string(readyKey("r", t0.Add(time.Minute), "ev/r")) {
		t.Fatalf("ready index %q", keys)
	}
	if d := mustDelivery(t, s, "ev/r"); !d.Due.Equal(t0.Add(time.Minute)) || d.Attempts != 1 {
		t.Fatalf("delivery %+v", d)
	}
	// Claimed at its new time, it records as usual.
	finish(t, s, "ev/r", StatusDelivered, t0.Add(2*time.Minute))
	if n := countPrefix(t, s, []byte{pReady, '|'}); n != 0 {
		t.Fatalf("%d ready entries left", n)
	}
}

// An attempt claimed before a requeue moved its delivery records with the
// due time it was claimed at; the entry the requeue wrote must go too.
func TestRequeueRacingAnAttempt(t *testing.T) {
	for _, outcome := range []Status{StatusDelivered, StatusDead, StatusPending} {
		t.Run(outcome.String(), func(t *testing.T) {
			s := openStore(t, Options{})
			ingest(t, s, oneIngest("ev", t0.Add(time.Hour), "r"))
			claimed := mustDelivery(t, s, "ev/r") // the dispatcher's copy
			if _, err := s.Requeue([]string{"ev/r"}, t0); err != nil {
				t.Fatal(err)
			}
			nd := *claimed
			nd.Attempts = 1
			nd.Status = outcome
			if outcome == StatusPending {
				nd.Due = t0.Add(2 * time.Hour)
			} else {
				nd.Done = t0.Add(time.Hour)
			}
			record(t, s, Outcome{Delivery: &nd, ClaimedDue: claimed.Due, Attempt: &Attempt{N: 1, Start: t0.Add(time.Hour)}})
			keys := keysWithPrefix(t, s, []byte{pReady, '|'})
			if outcome == StatusPending {
				if len(keys) != 1 || keys[0] != string(readyKey("r", nd.Due, "ev/r")) {
					t.Fatalf("ready index %q, want only the rescheduled entry", keys)
				}
			} else if len(keys) != 0 {
				t.Fatalf("ready index %q after a final outcome", keys)
			}
			if len(s.moved) != 0 {
				t.Fatalf("moved still holds %v", s.moved)
			}
		})
	}
}

func TestRequeueSkipsDeliveriesWithoutEvent(t *testing.T) {
	s := openStore(t, Options{})
	ingest(t, s, oneIngest("ev", t0, "r"))
	finish(t, s, "ev/r", StatusDead, t0)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(eventKey("ev")) }); err != nil {
		t.Fatal(err)
	}
	res, err := s.Requeue([]string{"ev/r"}, t0)
	if err != nil || len(res) != 0 {
		t.Fatalf("Requeue = %+v, %v; want nothing requeued", res, err)
	}
	if d := mustDelivery(t, s, "ev/r"); d.Status != StatusDead {
		t.Fatalf("delivery %+v", d)
	}
}

func TestRequeueManyInChunks(t *testing.T) {
	s := openStore(t, Options{})
	const n = 1000
	var all []string
	for i := 0; i < n; i += 100 {
		var batch []Ingest
		for j := i; j < i+100; j++ {
			in := oneIngest(fmt.Sprintf("e%04d", j), t0, "r")
			in.Event.Data = []byte(`"` + strings.Repeat("x", 4000) + `"`)
			batch = append(batch, in)
			all = append(all, in.Deliveries[0].ID)
		}
		ingest(t, s, batch...)
	}
	for _, id := range all {
		finish(t, s, id, StatusDead, t0)
	}
	res, err := s.Requeue(all, t0.Add(time.Minute))
	if err != nil || len(res) != n {
		t.Fatalf("Requeue: %d requeued, %v", len(res), err)
	}
	for i, r := range res {
		if r.ID != all[i] || r.Was != StatusDead {
			t.Fatalf("result %d = %+v", i, r)
		}
	}
	wantPending(t, s, map[string]int{"r": n})
	if got := listAll(t, s, ListFilter{Status: StatusPending, Limit: MaxListLimit}); len(got) != n {
		t.Fatalf("%d listed pending", len(got))
	}
}

func TestRequeueClosed(t *testing.T) {
	s := openStore(t, Options{})
	s.Close()
	if _, err := s.Requeue([]string{"x"}, t0); !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
	if _, _, err := s.ListDeliveries(ListFilter{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
	if _, _, err := s.ReplayIDs("r", StatusDead, time.Time{}, time.Time{}, "", 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
}

func TestRequeueOrderedDelivery(t *testing.T) {
	s := openStore(t, Options{})
	in := func(id string) Ingest {
		i := oneIngest(id, t0, "r")
		i.Deliveries[0].OrderKey = "k"
		return i
	}
	ingest(t, s, in("e1"), in("e2"), in("e3"))
	finish(t, s, "e1/r", StatusDead, t0) // e2 becomes active
	wantDue(t, s, "r", t0.Add(time.Hour), 10, nil, []Ref{{ID: "e2/r", Due: t0}}, time.Time{})

	// e3 waits behind e2: retrying it must not jump the queue.
	if res, err := s.Requeue([]string{"e3/r"}, t0.Add(time.Minute)); err != nil || len(res) != 1 {
		t.Fatalf("Requeue(e3) = %+v, %v", res, err)
	}
	// e1 rejoins the sequence behind the active e2.
	if res, err := s.Requeue([]string{"e1/r"}, t0.Add(time.Minute)); err != nil || len(res) != 1 || res[0].Was != StatusDead {
		t.Fatalf("Requeue(e1) = %+v, %v", res, err)
	}
	if d := mustDelivery(t, s, "e1/r"); d.Status != StatusPending || !d.Waiting {
		t.Fatalf("requeued e1 = %+v, want pending and waiting", d)
	}
	wantDue(t, s, "r", t0.Add(time.Hour), 10, nil, []Ref{{ID: "e2/r", Due: t0}}, time.Time{})
	wantPending(t, s, map[string]int{"r": 3})

	// When e2 is final, e1 (the older) goes next, then e3.
	finish(t, s, "e2/r", StatusDelivered, t0.Add(2*time.Minute))
	refs, _ := mustDue(t, s, "r", t0.Add(1000*time.Hour), 10, nil)
	if len(refs) != 1 || refs[0].ID != "e1/r" {
		t.Fatalf("after e2: due %s, want e1/r alone", fmtRefs(refs))
	}
}

func TestListPendingIncludesWaiting(t *testing.T) {
	s := openStore(t, Options{})
	in := func(id, key, route string, due time.Time) Ingest {
		i := oneIngest(id, due, route)
		i.Deliveries[0].OrderKey = key
		return i
	}
	// Route o: k1 has e1 active, e2 and e4 waiting; k2 has e3 active.
	ingest(t, s, in("e1", "k1", "o", t0.Add(3*time.Second)), in("e2", "k1", "o", t0),
		in("e3", "k2", "o", t0.Add(time.Second)), in("e4", "k1", "o", t0), in("p1", "", "p", t0))
	want := []string{"e3/o", "e1/o", "e2/o", "e4/o", "p1/p"}
	for _, limit := range []int{1, 2, 3, 100} {
		if got := listAll(t, s, ListFilter{Status: StatusPending, Limit: limit}); !reflect.DeepEqual(got, want) {
			t.Errorf("limit %d: %v, want %v", limit, got, want)
		}
		if got := listAll(t, s, ListFilter{Status: StatusPending, Route: "o", Limit: limit}); !reflect.DeepEqual(got, want[:4]) {
			t.Errorf("route o, limit %d: %v, want %v", limit, got, want[:4])
		}
	}
	ds, _, err := s.ListDeliveries(ListFilter{Status: StatusPending, Route: "o"})
	if err != nil || !ds[2].Waiting || ds[0].Waiting {
		t.Fatalf("%+v %v", ds, err)
	}
	// A cursor in the waiting part is a good cursor, for its route only.
	_, next := mustList(t, s, ListFilter{Status: StatusPending, Route: "o", Limit: 3})
	if _, _, err := s.ListDeliveries(ListFilter{Status: StatusPending, Route: "p", Cursor: next}); !errors.Is(err, ErrBadCursor) {
		t.Errorf("cursor of route o used for p: %v", err)
	}
	if _, _, err := s.ListDeliveries(ListFilter{Status: StatusDead, Cursor: next}); !errors.Is(err, ErrBadCursor) {
		t.Errorf("pending cursor used for dead: %v", err)
	}
}

func TestRequeueLargeEvents(t *testing.T) {
	s := openStore(t, Options{})
	big := `"` + strings.Repeat("x", 100<<10) + `"`
	var all []string
	for i := 0; i < 200; i += 10 {
		var batch []Ingest
		for j := i; j < i+10; j++ {
			in := oneIngest(fmt.Sprintf("e%03d", j), t0, "r")
			in.Event.Data = []byte(big)
			batch = append(batch, in)
			all = append(all, in.Deliveries[0].ID)
		}
		ingest(t, s, batch...)
	}
	for _, id := range all {
		finish(t, s, id, StatusDead, t0)
	}
	// A chunk of 128 events of 100 KiB is 12.5 MiB of values, more than a
	// transaction holds inline; they go to the value log.
	res, err := s.Requeue(all, t0)
	if err != nil || len(res) != len(all) {
		t.Fatalf("Requeue: %d requeued, %v", len(res), err)
	}
	wantPending(t, s, map[string]int{"r": len(all)})
}
