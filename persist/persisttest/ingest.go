package persisttest

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// testIngest: an ingest stores the event (payload byte for byte) and one
// pending delivery per route, due at its Due; look-ups find them and
// nothing else.
func testIngest(t *testing.T, e *env) {
	s := e.open()
	in := e.oneData("ev1", `{"b": [1, 2.50, "é"]}`, e.t0, "a", "b")
	in.Event.Headers = map[string]string{"X-Trace": "1"}
	in.Event.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if res := e.ingest(in); res[0] != (persist.IngestResult{ID: "ev1"}) {
		t.Fatalf("Ingest result = %+v, want {ID: ev1}", res[0])
	}
	ev := e.mustEvent("ev1")
	if ev.ID != "ev1" || ev.Type != "test.event" || ev.Source != "conformance" ||
		!ev.Time.Equal(e.t0) || !ev.Received.Equal(e.t0) ||
		string(ev.Data) != `{"b": [1, 2.50, "é"]}` || ev.Remaining != 2 || ev.KeepUntil != 0 ||
		ev.TraceParent != in.Event.TraceParent ||
		!reflect.DeepEqual(ev.Routes, []string{"a", "b"}) ||
		!reflect.DeepEqual(ev.Deliveries, []string{"ev1/a", "ev1/b"}) ||
		!reflect.DeepEqual(ev.Headers, map[string]string{"X-Trace": "1"}) {
		t.Fatalf("Event = %+v", ev)
	}
	for _, r := range []string{"a", "b"} {
		d := e.mustDelivery("ev1/" + r)
		if d.EventID != "ev1" || d.Route != r || d.Status != persist.StatusPending ||
			d.Attempts != 0 || !d.Due.Equal(e.t0) || !d.Created.Equal(e.t0) || d.Waiting {
			t.Fatalf("Delivery(ev1/%s) = %+v", r, d)
		}
		if as := e.attempts(d.ID); len(as) != 0 {
			t.Fatalf("Attempts(%s) = %+v, want none", d.ID, as)
		}
	}
	e.wantPending(map[string]int{"a": 1, "b": 1})
	e.wantDead(nil)
	if _, err := s.Event("nope"); !gone(err) {
		t.Fatalf("Event(nope): err = %v, want ErrNotFound", err)
	}
	if _, err := s.Delivery("nope"); !gone(err) {
		t.Fatalf("Delivery(nope): err = %v, want ErrNotFound", err)
	}
	if as, err := s.Attempts("nope"); err != nil || len(as) != 0 {
		t.Fatalf("Attempts(nope) = %v, %v; want none", as, err)
	}
	if _, err := s.Ingest(context.Background(), []persist.Ingest{{}}); err == nil {
		t.Fatal("Ingest of an element without an event succeeded")
	}
}

// testIngestKeep: an event without deliveries is stored only with Keep,
// and then expires after the delivered retention (KeepUntil by the
// injected clock).
func testIngestKeep(t *testing.T, e *env) {
	e.opts.Retention = 5 * time.Hour
	e.clock.Advance(time.Minute)
	now := e.clock.Now()
	e.open()
	res := e.ingest(
		persist.Ingest{Event: e.event("dropped", "x")},
		persist.Ingest{Event: e.event("kept", "y"), Keep: true},
	)
	if res[0] != (persist.IngestResult{ID: "dropped"}) || res[1] != (persist.IngestResult{ID: "kept"}) {
		t.Fatalf("results = %+v", res)
	}
	e.wantGone("dropped")
	ev := e.mustEvent("kept")
	if ev.Remaining != 0 || string(ev.Data) != "y" {
		t.Fatalf("kept event = %+v", ev)
	}
	if want := now.Add(5 * time.Hour).UnixNano(); ev.KeepUntil != want {
		t.Fatalf("kept event KeepUntil = %d, want %d (the clock's now + retention)", ev.KeepUntil, want)
	}
	e.wantPending(nil)
}

// testDedupe: a Dedupe key seen before makes the whole element a
// duplicate that stores nothing and reports the original id; in separate
// calls, within one batch and between concurrent calls.
func testDedupe(t *testing.T, e *env) {
	s := e.open()
	t.Run("separate calls", func(t *testing.T) {
		a := e.one("a1", e.t0, "r")
		a.Dedupe = "key-1"
		if res := e.ingest(a); res[0] != (persist.IngestResult{ID: "a1"}) {
			t.Fatalf("first = %+v", res[0])
		}
		b := e.one("a2", e.t0, "r", "r2")
		b.Dedupe = "key-1"
		if res := e.ingest(b); res[0] != (persist.IngestResult{Duplicate: true, ID: "a1"}) {
			t.Fatalf("second = %+v, want a duplicate of a1", res[0])
		}
		e.wantPending(map[string]int{"r": 1})
		e.wantGone("a2", "a2/r", "a2/r2")
		if ev := e.mustEvent("a1"); ev.Remaining != 1 {
			t.Fatalf("original event changed: %+v", ev)
		}
	})
	t.Run("one batch", func(t *testing.T) {
		x, y, z := e.one("b1", e.t0, "r"), e.one("b2", e.t0, "r"), e.one("b3", e.t0, "r")
		x.Dedupe, y.Dedupe, z.Dedupe = "key-2", "key-2", "key-3"
		res := e.ingest(x, y, z)
		want := []persist.IngestResult{{ID: "b1"}, {Duplicate: true, ID: "b1"}, {ID: "b3"}}
		if !reflect.DeepEqual(res, want) {
			t.Fatalf("results = %+v, want %+v", res, want)
		}
		e.wantPending(map[string]int{"r": 3})
		e.wantGone("b2", "b2/r")
	})
	t.Run("concurrent calls", func(t *testing.T) {
		const n = 16
		var wg sync.WaitGroup
		start := make(chan struct{})
		res := make([]persist.IngestResult, n)
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in := e.one(fmt.Sprintf("c%02d", i), e.t0, "r")
				in.Dedupe = "key-4"
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				r, err := s.Ingest(ctx, []persist.Ingest{in})
				errs[i] = err
				if err == nil {
					res[i] = r[0]
				}
			}()
		}
		close(start)
		wg.Wait()
		first := ""
		for i := 0; i < n; i++ {
			if errs[i] != nil {
				t.Fatalf("ingest %d: %v", i, errs[i])
			}
			if !res[i].Duplicate {
				if first != "" {
					t.Fatalf("two ingests with one key stored: %s and %s", first, res[i].ID)
				}
				first = res[i].ID
			}
		}
		if first == "" {
			t.Fatal("every concurrent ingest was a duplicate")
		}
		for i := 0; i < n; i++ {
			if res[i].Duplicate && res[i].ID != first {
				t.Fatalf("duplicate %d reports %s, want %s", i, res[i].ID, first)
			}
			if id := fmt.Sprintf("c%02d", i); id != first {
				e.wantGone(id, id+"/r")
			}
		}
		e.wantPending(map[string]int{"r": 4})
	})
	t.Run("no key", func(t *testing.T) {
		x, y := e.one("n1", e.t0, "r"), e.one("n2", e.t0, "r")
		x.Dedupe, y.Dedupe = "", ""
		if res := e.ingest(x, y); res[0].Duplicate || res[1].Duplicate {
			t.Fatalf("results = %+v, want both stored", res)
		}
		e.wantPending(map[string]int{"r": 6})
	})
}

// testDedupeWindow: a key is remembered for the dedupe window by the
// injected clock; after it, the key stores a new event (of another id).
func testDedupeWindow(t *testing.T, e *env) {
	e.opts.DedupeWindow = time.Hour
	e.open()
	first := e.one("w1", e.t0, "r")
	first.Dedupe = "k"
	e.ingest(first)
	e.clock.Advance(time.Hour - time.Second)
	dup := e.one("w2", e.t0, "r")
	dup.Dedupe = "k"
	if res := e.ingest(dup); res[0] != (persist.IngestResult{Duplicate: true, ID: "w1"}) {
		t.Fatalf("a second before the window ends: %+v, want a duplicate of w1", res[0])
	}
	e.clock.Advance(2 * time.Second)
	again := e.one("w3", e.t0, "r")
	again.Dedupe = "k"
	if res := e.ingest(again); res[0] != (persist.IngestResult{ID: "w3"}) {
		t.Fatalf("a second after the window: %+v, want w3 stored", res[0])
	}
	e.wantPending(map[string]int{"r": 2})
	e.mustDelivery("w3/r")
	// The key now names w3, for a new window.
	last := e.one("w4", e.t0, "r")
	last.Dedupe = "k"
	if res := e.ingest(last); res[0] != (persist.IngestResult{Duplicate: true, ID: "w3"}) {
		t.Fatalf("after the key was used again: %+v, want a duplicate of w3", res[0])
	}
}

// testReusedIDWhileEventPending: an id used again after the dedupe
// window, while its event is still stored, is a duplicate: the stored
// event is never overwritten, its delivery still carries the first
// payload and the event's count of unfinished deliveries stays right.
func testReusedIDWhileEventPending(t *testing.T, e *env) {
	e.opts.DedupeWindow = time.Minute
	e.opts.Retention = time.Hour
	e.open()
	e.ingest(e.oneData("same", `{"v":1}`, e.t0, "r"))
	reuse := func(what string) {
		t.Helper()
		e.clock.Advance(2 * time.Minute)
		in := e.oneData("same", `{"v":2}`, e.clock.Now(), "r")
		in.Deliveries[0].ID = "same/again"
		if res := e.ingest(in); res[0] != (persist.IngestResult{Duplicate: true, ID: "same"}) {
			t.Fatalf("%s: reused id = %+v, want a duplicate of same", what, res[0])
		}
		if _, err := e.s.Delivery("same/again"); !gone(err) {
			t.Fatalf("%s: the reused id's delivery was stored (err = %v)", what, err)
		}
		ev := e.mustEvent("same")
		if string(ev.Data) != `{"v":1}` || !reflect.DeepEqual(ev.Deliveries, []string{"same/r"}) {
			t.Fatalf("%s: stored event = %+v (data %s), want the first one", what, ev, ev.Data)
		}
	}
	reuse("first delivery pending")
	if ev := e.mustEvent("same"); ev.Remaining != 1 {
		t.Fatalf("Remaining = %d, want 1", ev.Remaining)
	}
	e.wantPending(map[string]int{"r": 1})
	e.wantDue("r", e.clock.Now(), []persist.Ref{{ID: "same/r", Due: e.t0}}, time.Time{})

	// Delivered, the event is retained: still held, still a duplicate.
	e.finish("same/r", persist.StatusDelivered, e.clock.Now())
	reuse("first event retained")
	if ev := e.mustEvent("same"); ev.Remaining != 0 {
		t.Fatalf("Remaining = %d after the delivery, want 0", ev.Remaining)
	}
	e.wantPending(nil)
}

// testReusedIDAfterEventGone: once the event has expired and the window
// has passed, the id is free: a new ingest gets a fresh record.
func testReusedIDAfterEventGone(t *testing.T, e *env) {
	e.require(Expiry)
	e.opts.DedupeWindow = time.Minute
	e.opts.Retention = time.Second
	e.open()
	e.ingest(e.oneData("same", `{"v":1}`, e.t0, "r"))
	e.finish("same/r", persist.StatusDelivered, e.clock.Now())
	e.clock.Advance(2 * time.Minute)
	e.eventually(time.Second+e.h.ExpiryGrace, "event expired by a 1s retention", func() bool {
		_, err := e.s.Event("same")
		return gone(err)
	})
	in := e.oneData("same", `{"v":2}`, e.clock.Now(), "r")
	in.Deliveries[0].ID = "same/again"
	if res := e.ingest(in); res[0] != (persist.IngestResult{ID: "same"}) {
		t.Fatalf("id reused after its event expired: %+v, want stored", res[0])
	}
	ev := e.mustEvent("same")
	if string(ev.Data) != `{"v":2}` || ev.Remaining != 1 || !reflect.DeepEqual(ev.Deliveries, []string{"same/again"}) {
		t.Fatalf("new event = %+v (data %s)", ev, ev.Data)
	}
	e.wantPending(map[string]int{"r": 1})
	e.wantDue("r", e.clock.Now(), []persist.Ref{{ID: "same/again", Due: e.clock.Now()}}, time.Time{})
}
