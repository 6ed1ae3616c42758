package natsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/persist"
	"github.com/hookgate/hookgate/persist/nats/natstest"
)

var testPrefixes atomic.Int64

// twoNodes opens two stores on one prefix, as two Caddy nodes would.
func twoNodes(t *testing.T) (*Store, *Store) {
	t.Helper()
	srv := natstest.Run(t)
	cfg := Config{Servers: []string{srv.URL()}, Prefix: fmt.Sprintf("s%d", testPrefixes.Add(1))}
	open := func() *Store {
		s, err := Open(cfg, persist.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return open(), open()
}

func ingestOne(t *testing.T, s *Store, id string, due time.Time) persist.IngestResult {
	t.Helper()
	in := persist.Ingest{
		Event:      &persist.Event{ID: id, Type: "t", Data: []byte(`{}`)},
		Deliveries: []*persist.Delivery{{ID: id + "/r", EventID: id, Route: "r", Due: due}},
		Dedupe:     id,
	}
	res, err := s.Ingest(context.Background(), []persist.Ingest{in})
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, 10*time.Second, what, cond)
}

func eventuallyWithin(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClaimOneNodeAtATime: of two nodes claiming one delivery at once,
// one wins; the other no longer lists it; Record releases the claim.
func TestClaimOneNodeAtATime(t *testing.T) {
	a, b := twoNodes(t)
	now := time.Now()
	ingestOne(t, a, "e1", now)
	eventually(t, "b sees a's delivery", func() bool { _, ok := b.mirror.delivery("e1/r"); return ok })
	var wins atomic.Int32
	var wg sync.WaitGroup
	for _, s := range []*Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.Claim("e1/r", now, time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d claims won, want 1", n)
	}
	holder, other := a, b
	a.mirror.mu.RLock()
	if c, ok := a.mirror.claims["e1/r"]; !ok || c.node != a.node {
		holder, other = b, a
	}
	a.mirror.mu.RUnlock()
	eventually(t, "the other node stops listing the claimed delivery", func() bool {
		refs, _, _ := other.Due("r", now, 10, nil)
		return len(refs) == 0
	})
	// A claim for a stale due time is refused.
	if ok, _ := other.Claim("e1/r", now.Add(-time.Second), time.Minute); ok {
		t.Fatal("claim with a stale due time won")
	}
	d, _ := holder.Delivery("e1/r")
	d.Status, d.Attempts, d.Due = persist.StatusPending, 1, now.Add(time.Second)
	done := make(chan error, 1)
	holder.Record(persist.Outcome{Delivery: d, ClaimedDue: now}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	eventually(t, "the other node lists the retry once the claim is released", func() bool {
		refs, _, _ := other.Due("r", now.Add(time.Second), 10, nil)
		return len(refs) == 1 && refs[0].Due.Equal(d.Due)
	})
	if ok, err := other.Claim("e1/r", d.Due, time.Minute); !ok || err != nil {
		t.Fatalf("claim after release = %v, %v; want won", ok, err)
	}
	// A release leaves a marker that expires too: a key is claimed once
	// per attempt, and markers kept for ever would grow the claims
	// stream by one for every delivery ever made.
	other.Release("e1/r")
	m, err := a.claims.stream.GetLastMsgForSubject(context.Background(), a.claims.subj+enc("e1/r"))
	if err != nil || !isMarker(m.Header) {
		t.Fatalf("claim after its release: %+v %v, want a delete marker", m, err)
	}
	if m.Header.Get("Nats-TTL") == "" {
		t.Fatal("a released claim's marker never expires")
	}
}

// TestReleaseMarkerLeavesNothing: when a released claim's marker
// expires, the server drops it and writes none of its own in its place
// (as it would for an expired delete marker); a later claim of the key
// still works.
func TestReleaseMarkerLeavesNothing(t *testing.T) {
	a, _ := twoNodes(t)
	ctx := context.Background()
	rev, err := a.claims.create(ctx, "d", []byte(a.node), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.claims.del(ctx, "d", rev, time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the marker expired and nothing took its place", func() bool {
		_, err := a.claims.stream.GetLastMsgForSubject(ctx, a.claims.subj+enc("d"))
		return errors.Is(err, jetstream.ErrMsgNotFound)
	})
	if _, err := a.claims.create(ctx, "d", []byte(a.node), time.Hour); err != nil {
		t.Fatalf("claim after the marker expired: %v", err)
	}
}

// TestClaimExpires: a node that dies holding a claim strands nothing:
// the claim expires after its lease and the delivery is due elsewhere.
func TestClaimExpires(t *testing.T) {
	a, b := twoNodes(t)
	now := time.Now()
	ingestOne(t, a, "e1", now)
	if ok, err := a.Claim("e1/r", now, time.Second); !ok || err != nil {
		t.Fatalf("claim = %v, %v", ok, err)
	}
	a.Abandon()
	eventually(t, "b sees the claim", func() bool {
		b.mirror.mu.RLock()
		defer b.mirror.mu.RUnlock()
		return b.mirror.claimedElsewhereLocked("e1/r", b.node)
	})
	if refs, _, _ := b.Due("r", now, 10, nil); len(refs) != 0 {
		t.Fatalf("Due lists a delivery claimed by another node: %v", refs)
	}
	eventually(t, "the claim expired and b lists the delivery", func() bool {
		refs, _, _ := b.Due("r", now, 10, nil)
		return len(refs) == 1
	})
	if ok, err := b.Claim("e1/r", now, time.Minute); !ok || err != nil {
		t.Fatalf("claim after expiry = %v, %v; want won", ok, err)
	}
}

// TestDedupeAcrossNodes: one id ingested on two nodes at once is stored
// once; the other node answers duplicate.
func TestDedupeAcrossNodes(t *testing.T) {
	a, b := twoNodes(t)
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("e%d", i)
		var ra, rb persist.IngestResult
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); ra = ingestOne(t, a, id, time.Now()) }()
		go func() { defer wg.Done(); rb = ingestOne(t, b, id, time.Now()) }()
		wg.Wait()
		if ra.Duplicate == rb.Duplicate || ra.ID != id || rb.ID != id {
			t.Fatalf("%s: results %+v and %+v, want one stored and one duplicate", id, ra, rb)
		}
	}
	eventually(t, "both nodes count 20 pending", func() bool {
		pa, _ := a.Pending()
		pb, _ := b.Pending()
		return pa["r"] == 20 && pb["r"] == 20
	})
}

// TestIngestRepairsWhatADeadNodeLeft: a node that died after writing an
// event record and before its deliveries acknowledged nothing; the
// client's retry (on any node) is a duplicate that writes the missing
// deliveries, so the event is delivered.
func TestIngestRepairsWhatADeadNodeLeft(t *testing.T) {
	a, b := twoNodes(t)
	now := time.Now()
	ev := &persist.Event{ID: "half", Type: "t", Data: []byte(`{}`), Remaining: 1, Deliveries: []string{"half/r"}}
	d := &persist.Delivery{ID: "half/r", EventID: "half", Route: "r", Status: persist.StatusPending, Due: now}
	ctx := context.Background()
	if dup, _, err := a.takeKey(ctx, "half", "half", now, time.Hour, false); dup || err != nil {
		t.Fatal(dup, err)
	}
	rec, _ := json.Marshal(eventRecord{Event: ev, Data: ev.Data, Initial: []*persist.Delivery{d}})
	if _, err := a.events.create(ctx, "half", rec, 0); err != nil {
		t.Fatal(err)
	}
	a.Abandon()
	if p, _ := b.Pending(); p["r"] != 0 {
		t.Fatalf("pending before the retry = %v, want none", p)
	}
	if res := ingestOne(t, b, "half", now); res != (persist.IngestResult{Duplicate: true, ID: "half"}) {
		t.Fatalf("retry = %+v, want a duplicate of half", res)
	}
	if p, _ := b.Pending(); p["r"] != 1 {
		t.Fatalf("pending after the retry = %v, want r: 1", p)
	}
	if refs, _, _ := b.Due("r", now, 10, nil); len(refs) != 1 || refs[0].ID != "half/r" {
		t.Fatalf("Due after the retry = %v, want half/r", refs)
	}
}

// TestStorageFull: JetStream refusing writes for lack of room is
// persist.ErrStorageFull, which ingest answers 503 storage_full.
func TestStorageFull(t *testing.T) {
	srv := natstest.RunWith(t, func(o *server.Options) { o.JetStreamMaxStore = 4 << 20 })
	s, err := Open(Config{Servers: []string{srv.URL()}, Prefix: "full"}, persist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	big := make([]byte, 256<<10)
	for i := range big {
		big[i] = 'x'
	}
	for i := 0; i < 100; i++ {
		id := fmt.Sprintf("e%d", i)
		in := persist.Ingest{Event: &persist.Event{ID: id, Type: "t", Data: big},
			Deliveries: []*persist.Delivery{{ID: id + "/r", EventID: id, Route: "r", Due: time.Now()}}}
		_, err := s.Ingest(context.Background(), []persist.Ingest{in})
		if err == nil {
			continue
		}
		if !errors.Is(err, persist.ErrStorageFull) {
			t.Fatalf("ingest %d into a full server: %v, want ErrStorageFull", i, err)
		}
		return
	}
	t.Fatal("100 ingests of 256 KiB fit in a 4 MiB store")
}

// TestClusterLosesOneServer: with replicas 3 on a 3-node cluster, the
// outbox keeps taking and serving writes when one server goes away.
func TestClusterLosesOneServer(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	began := time.Now()
	s, err := Open(Config{Servers: c.URLs(), Prefix: "r3", Replicas: 3}, persist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	t.Logf("opened in %v", time.Since(began))
	now := time.Now()
	ingestOne(t, s, "before", now)
	c.Servers[0].Shutdown()
	// A new stream leader is elected within a few seconds; the bound is
	// generous for a loaded machine.
	eventuallyWithin(t, 45*time.Second, "an ingest succeeds after a server went away", func() bool {
		in := persist.Ingest{
			Event:      &persist.Event{ID: "after", Type: "t", Data: []byte(`{}`)},
			Deliveries: []*persist.Delivery{{ID: "after/r", EventID: "after", Route: "r", Due: now}},
			Dedupe:     "after",
		}
		_, err := s.Ingest(context.Background(), []persist.Ingest{in})
		return err == nil
	})
	if p, _ := s.Pending(); p["r"] != 2 {
		t.Fatalf("pending = %v, want r: 2", p)
	}
	if _, err := s.Event("before"); err != nil {
		t.Fatalf("event stored before the loss: %v", err)
	}
}

// TestClusterConcurrentOpen: nodes starting together create the same
// streams at once.
func TestClusterConcurrentOpen(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := time.Now()
			s, err := Open(Config{Servers: c.URLs(), Prefix: "co", Replicas: 3}, persist.Options{})
			if err != nil {
				t.Error(err)
				return
			}
			t.Logf("opened in %v", time.Since(began))
			s.Close()
		}()
	}
	wg.Wait()
}

// TestOutageThenRecovery: while NATS is down, ingest fails at once and
// stores nothing; when it is back, the store carries on by itself (the
// watches resume, writes of other nodes show again).
func TestOutageThenRecovery(t *testing.T) {
	srv := natstest.Run(t)
	cfg := Config{Servers: []string{srv.URL()}, Prefix: "out"}
	s, err := Open(cfg, persist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now()
	ingestOne(t, s, "before", now)
	srv.Shutdown()
	srv.WaitForShutdown()
	eventually(t, "the client notices the outage", func() bool { return !s.nc.IsConnected() })
	began := time.Now()
	in := persist.Ingest{Event: &persist.Event{ID: "during", Type: "t", Data: []byte(`{}`)},
		Deliveries: []*persist.Delivery{{ID: "during/r", EventID: "during", Route: "r", Due: now}}}
	if _, err := s.Ingest(context.Background(), []persist.Ingest{in}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ingest during the outage: %v, want ErrUnavailable", err)
	}
	if d := time.Since(began); d > time.Second {
		t.Fatalf("ingest during the outage took %v, want an answer at once", d)
	}
	// What an operator looks up answers at once too, as unavailable
	// (503), from whatever reads the server; the mirror still answers.
	reads := map[string]func() error{
		"event":      func() error { _, err := s.Event("before"); return err },
		"attempts":   func() error { _, err := s.Attempts("before/r"); return err },
		"unmirrored": func() error { _, err := s.Delivery("nope/r"); return err },
		"list":       func() error { _, _, err := s.ListDeliveries(persist.ListFilter{}); return err },
		"delivered": func() error {
			_, _, err := s.ListDeliveries(persist.ListFilter{Status: persist.StatusDelivered})
			return err
		},
		"received": func() error {
			_, _, err := s.EventsReceived(now.Add(-time.Hour), now.Add(time.Hour), "", 10)
			return err
		},
	}
	for what, read := range reads {
		began := time.Now()
		if err := read(); !Unavailable(err) {
			t.Errorf("%s during the outage: %v, want unavailable", what, err)
		}
		if d := time.Since(began); d > time.Second {
			t.Errorf("%s during the outage took %v, want an answer at once", what, d)
		}
	}
	if d, err := s.Delivery("before/r"); err != nil || d.Status != persist.StatusPending {
		t.Errorf("a mirrored delivery during the outage: %+v, %v; want it pending", d, err)
	}
	if err := s.Health(); !Unavailable(err) {
		t.Errorf("Health during the outage: %v, want unavailable", err)
	}
	srv.Restart(t)
	eventually(t, "Health says NATS is back", func() bool { return s.Health() == nil })
	eventually(t, "ingest works again", func() bool {
		_, err := s.Ingest(context.Background(), []persist.Ingest{in})
		return err == nil
	})
	// Another node's write reaches this one's mirror: the watch resumed.
	other, err := Open(cfg, persist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	ingestOne(t, other, "after", now)
	eventually(t, "the first node sees the other's delivery (the watch resumed)", func() bool {
		p, _ := s.Pending()
		return p["r"] == 3
	})
}

// TestRedacted: passwords and tokens in server URLs never reach errors
// and logs.
func TestRedacted(t *testing.T) {
	c := Config{Servers: []string{"nats://u:secret@h:4222", "nats://tok@h2:4222", "nats://h3:4222"}}
	got := fmt.Sprint(c.Redacted())
	if want := "[nats://u:xxxxx@h:4222 nats://xxxxx@h2:4222 nats://h3:4222]"; got != want {
		t.Fatalf("Redacted = %s, want %s", got, want)
	}
}

// TestRepairNeverBringsBackAFinishedDelivery: a delivery that was written
// and became final, then expired (its delete marker gone too) while a
// sibling keeps the event stored, is not recreated by the repair that a
// duplicate ingest of the event runs.
func TestRepairNeverBringsBackAFinishedDelivery(t *testing.T) {
	s, _ := twoNodes(t)
	now := time.Now()
	ctx := context.Background()
	ingestRoutes(t, s, "ev", now, "a", "b")
	for _, o := range []struct {
		id string
		st persist.Status
	}{{"ev-a", persist.StatusDelivered}, {"ev-b", persist.StatusDead}} {
		d, err := s.Delivery(o.id)
		if err != nil {
			t.Fatal(err)
		}
		claimed := d.Due
		d.Status, d.Attempts, d.Done = o.st, 1, now
		done := make(chan error, 1)
		s.Record(persist.Outcome{Delivery: d, ClaimedDue: claimed, Attempt: &persist.Attempt{N: 1, Start: now}},
			func(err error) { done <- err })
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// ev-a expires, and its delete marker after it: no trace is left.
	if err := s.deliveries.stream.Purge(ctx, jetstream.WithPurgeSubject(s.deliveries.subj+enc("ev-a"))); err != nil {
		t.Fatal(err)
	}
	if res := ingestOne(t, s, "ev", now); !res.Duplicate {
		t.Fatalf("re-post of ev = %+v, want a duplicate", res)
	}
	if e, err := s.deliveries.get(ctx, "ev-a"); err != nil || e.rev != 0 {
		t.Fatalf("ev-a after the repair: rev %d, %v; want still gone", e.rev, err)
	}
	if p, _ := s.Pending(); p["a"] != 0 {
		t.Fatalf("pending after the repair = %v, want nothing for route a", p)
	}
}

// TestOutcomeShortcutsFallBack: an outcome starts from the event record
// this node last read and creates a first attempt's history without
// reading it. Both must still be right when the record or the history
// changed meanwhile: on another node, or by an earlier first attempt.
func TestOutcomeShortcutsFallBack(t *testing.T) {
	a, b := twoNodes(t)
	now := time.Now()
	ctx := context.Background()
	ingestRoutes(t, a, "ev", now, "1", "2")
	record := func(s *Store, id string) { recordOutcome(t, s, id, persist.StatusDelivered, 1, 200) }
	// a reads the event (as sending ev-1 does); b then counts ev-2 off
	// it, so the record a holds is stale when it counts ev-1 off.
	if ev, err := a.Event("ev"); err != nil || ev.Remaining != 2 {
		t.Fatalf("event before any outcome: %+v %v, want 2 remaining", ev, err)
	}
	record(b, "ev-2")
	record(a, "ev-1")
	ev, err := a.Event("ev")
	if err != nil || ev.Remaining != 0 || ev.KeepUntil == 0 {
		t.Fatalf("event after both deliveries: %+v %v, want 0 remaining and a retention", ev, err)
	}

	// A second "first" attempt (a requeued delivery numbering afresh)
	// finds the history there and appends to it.
	for i, code := range []int{500, 200} {
		if err := a.appendAttempt(ctx, "ev-x", &persist.Attempt{N: 1, Start: now.Add(time.Duration(i) * time.Second), Status: code}, 0); err != nil {
			t.Fatal(err)
		}
	}
	as, err := a.Attempts("ev-x")
	if err != nil || len(as) != 2 || as[0].Status != 500 || as[1].Status != 200 {
		t.Fatalf("history after two first attempts: %+v %v, want both, in order", as, err)
	}
}

// TestFirstAttemptKeptInDeliveryRecord: a delivery whose first attempt
// is final keeps that attempt in its own record, not in the attempts
// bucket; Attempts finds it there, a requeue moves it to the history,
// and later attempts follow it.
func TestFirstAttemptKeptInDeliveryRecord(t *testing.T) {
	s, _ := twoNodes(t)
	now := time.Now()
	ctx := context.Background()
	ingestOne(t, s, "e1", now)
	ingestOne(t, s, "e2", now)
	record := func(id string, st persist.Status, n int, code int) { recordOutcome(t, s, id, st, n, code) }
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
	inBucket := func(id string) bool {
		t.Helper()
		e, err := s.attempts.get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return e.rev != 0 && !e.deleted
	}

	record("e1/r", persist.StatusDelivered, 1, 200)
	record("e2/r", persist.StatusDead, 1, 410)
	for id, want := range map[string]string{"e1/r": "[1:200]", "e2/r": "[1:410]"} {
		if inBucket(id) {
			t.Fatalf("%s: a final first attempt was written to the attempts bucket", id)
		}
		if got := history(id); got != want {
			t.Fatalf("attempts of %s = %s, want %s", id, got, want)
		}
	}

	// Requeued, e1/r's attempt moves to the history and stays listed
	// once; its next attempt follows it.
	if rq, err := s.Requeue([]string{"e1/r"}, now); err != nil || len(rq) != 1 {
		t.Fatalf("requeue: %v %v", rq, err)
	}
	if !inBucket("e1/r") {
		t.Fatal("requeue left the first attempt out of the attempts bucket")
	}
	if e, err := s.deliveries.get(ctx, "e1/r"); err != nil || strings.Contains(string(e.val), "final_attempt") {
		t.Fatalf("delivery record after requeue: %s %v; want it without final_attempt", e.val, err)
	}
	if got := history("e1/r"); got != "[1:200]" {
		t.Fatalf("attempts after requeue = %s, want [1:200]", got)
	}
	record("e1/r", persist.StatusDelivered, 2, 201)
	if got := history("e1/r"); got != "[1:200 2:201]" {
		t.Fatalf("attempts after the second = %s, want [1:200 2:201]", got)
	}

	// Held in both places (a requeue stopped between its two writes),
	// the attempt is listed once.
	held, err := s.Attempts("e2/r")
	if err != nil || len(held) != 1 {
		t.Fatalf("attempts of e2/r: %v %v", held, err)
	}
	if err := s.appendAttempt(ctx, "e2/r", &held[0], 0); err != nil {
		t.Fatal(err)
	}
	if got := history("e2/r"); got != "[1:410]" {
		t.Fatalf("attempts of e2/r held twice = %s, want [1:410]", got)
	}
}

// recordOutcome records attempt n of delivery id, read from the server,
// ending with status st and HTTP code.
func recordOutcome(t *testing.T, s *Store, id string, st persist.Status, n, code int) {
	t.Helper()
	d, err := s.fetchDelivery(context.Background(), id)
	if err != nil || d == nil {
		t.Fatalf("reading %s: %v %v", id, d, err)
	}
	now := time.Now()
	claimed := d.Due
	d.Status, d.Attempts, d.Done = st, n, now
	done := make(chan error, 1)
	s.Record(persist.Outcome{Delivery: d, ClaimedDue: claimed, Attempt: &persist.Attempt{N: n, Start: now, Status: code}},
		func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// ingestRoutes ingests event id with one delivery per route, id-route,
// due at due.
func ingestRoutes(t *testing.T, s *Store, id string, due time.Time, routes ...string) {
	t.Helper()
	in := persist.Ingest{Event: &persist.Event{ID: id, Type: "t", Data: []byte(`{}`)}, Dedupe: id}
	for _, r := range routes {
		in.Deliveries = append(in.Deliveries, &persist.Delivery{ID: id + "-" + r, EventID: id, Route: r, Status: persist.StatusPending, Due: due})
	}
	if _, err := s.Ingest(context.Background(), []persist.Ingest{in}); err != nil {
		t.Fatal(err)
	}
}

// TestAttemptHistoryEdges: a requeue retried after it moved the attempt,
// two nodes' attempts with the same number (a lease that ran out
// mid-attempt), and an attempt too long to keep in the delivery's record
// each leave the history that was made, once.
func TestAttemptHistoryEdges(t *testing.T) {
	s, b := twoNodes(t)
	now := time.Now()
	ctx := context.Background()
	count := func(id string, want int) []persist.Attempt {
		t.Helper()
		as, err := s.Attempts(id)
		if err != nil || len(as) != want {
			t.Fatalf("attempts of %s: %+v %v, want %d", id, as, err, want)
		}
		return as
	}

	// The move happened, the rewrite did not: the retried requeue must
	// not list the attempt twice.
	ingestOne(t, s, "e1", now)
	recordOutcome(t, s, "e1/r", persist.StatusDead, 1, 410)
	held := count("e1/r", 1)
	if err := s.appendAttempt(ctx, "e1/r", &held[0], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Requeue([]string{"e1/r"}, now); err != nil {
		t.Fatal(err)
	}
	count("e1/r", 1)

	// Two nodes each made attempt 1: both are listed.
	ingestOne(t, s, "e2", now)
	recordOutcome(t, s, "e2/r", persist.StatusPending, 1, 500)
	recordOutcome(t, b, "e2/r", persist.StatusDelivered, 1, 200)
	if as := count("e2/r", 2); as[0].Status != 500 || as[1].Status != 200 {
		t.Fatalf("attempts of e2/r: %+v, want the pending one, then the final one", as)
	}

	// A long response excerpt stays out of the delivery's record.
	ingestOne(t, s, "e3", now)
	d, err := s.fetchDelivery(ctx, "e3/r")
	if err != nil || d == nil {
		t.Fatalf("reading e3/r: %v %v", d, err)
	}
	claimed := d.Due
	d.Status, d.Attempts, d.Done = persist.StatusDelivered, 1, now
	long := persist.Attempt{N: 1, Start: now, Status: 200, Response: []byte(strings.Repeat("x", maxEmbeddedAttempt+1))}
	done := make(chan error, 1)
	s.Record(persist.Outcome{Delivery: d, ClaimedDue: claimed, Attempt: &long}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if e, err := s.deliveries.get(ctx, "e3/r"); err != nil || strings.Contains(string(e.val), "final_attempt") {
		t.Fatalf("delivery record of e3/r holds its long attempt (%v)", err)
	}
	if as := count("e3/r", 1); len(as[0].Response) != maxEmbeddedAttempt+1 {
		t.Fatalf("attempt of e3/r kept %d bytes of response, want %d", len(as[0].Response), maxEmbeddedAttempt+1)
	}
}

// TestBatchStoredConcurrently: the elements of a batch that cannot affect
// each other are stored at once, and every one is whole and in its place
// in the results; a batch where two share a key is stored in order, the
// first winning.
func TestBatchStoredConcurrently(t *testing.T) {
	s, _ := twoNodes(t)
	now := time.Now()
	ctx := context.Background()
	const n = 3 * ingestParallel
	batch := make([]persist.Ingest, n)
	for i := range batch {
		id := fmt.Sprintf("b%03d", i)
		batch[i] = persist.Ingest{
			Event:      &persist.Event{ID: id, Type: "t", Data: []byte(fmt.Sprintf(`{"i":%d}`, i))},
			Deliveries: []*persist.Delivery{{ID: id + "/r", EventID: id, Route: "r", Due: now}},
			Dedupe:     "k" + id,
		}
	}
	if !independent(batch) {
		t.Fatal("a batch of distinct ids and keys was not taken as independent")
	}
	res, err := s.Ingest(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		id := fmt.Sprintf("b%03d", i)
		if r != (persist.IngestResult{ID: id}) {
			t.Fatalf("result %d = %+v, want %s stored", i, r, id)
		}
		ev, err := s.Event(id)
		if err != nil || string(ev.Data) != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("event %s: %+v %v", id, ev, err)
		}
		if d, err := s.fetchDelivery(ctx, id+"/r"); err != nil || d == nil || d.Status != persist.StatusPending {
			t.Fatalf("delivery of %s: %+v %v", id, d, err)
		}
	}
	if p, _ := s.Pending(); p["r"] != n {
		t.Fatalf("pending = %v, want %d for r", p, n)
	}

	// One key twice: in order, the first wins.
	dup := []persist.Ingest{batch[0], batch[1]}
	dup[0].Event = &persist.Event{ID: "x1", Type: "t", Data: []byte(`{}`)}
	dup[1].Event = &persist.Event{ID: "x2", Type: "t", Data: []byte(`{}`)}
	dup[0].Deliveries = []*persist.Delivery{{ID: "x1/r", EventID: "x1", Route: "r", Due: now}}
	dup[1].Deliveries = []*persist.Delivery{{ID: "x2/r", EventID: "x2", Route: "r", Due: now}}
	dup[0].Dedupe, dup[1].Dedupe = "kx", "kx"
	if independent(dup) {
		t.Fatal("a batch sharing a key was taken as independent")
	}
	res, err = s.Ingest(ctx, dup)
	if err != nil || res[0] != (persist.IngestResult{ID: "x1"}) || res[1] != (persist.IngestResult{Duplicate: true, ID: "x1"}) {
		t.Fatalf("batch sharing a key: %+v %v, want x1 stored and x2 its duplicate", res, err)
	}
}

// TestBatchElementFailsTheBatch: when one element of a batch stored
// concurrently cannot be stored, the call fails, after every element it
// started has ended, and the store goes on working.
func TestBatchElementFailsTheBatch(t *testing.T) {
	s, _ := twoNodes(t)
	now := time.Now()
	ctx := context.Background()
	batch := make([]persist.Ingest, 2*ingestParallel)
	for i := range batch {
		id := fmt.Sprintf("f%03d", i)
		data := []byte(`{}`)
		if i == ingestParallel/2 {
			// Over the servers' maximum message size.
			data = []byte(`"` + strings.Repeat("x", 2<<20) + `"`)
		}
		batch[i] = persist.Ingest{
			Event:      &persist.Event{ID: id, Type: "t", Data: data},
			Deliveries: []*persist.Delivery{{ID: id + "/r", EventID: id, Route: "r", Due: now}},
			Dedupe:     id,
		}
	}
	if !independent(batch) {
		t.Fatal("the batch was not taken as independent")
	}
	if res, err := s.Ingest(ctx, batch); err == nil {
		t.Fatalf("a batch with an element too big to store: %+v, want an error", res)
	}
	// Every element that was started has ended: none is still writing
	// its deliveries after the answer.
	p1, _ := s.Pending()
	time.Sleep(200 * time.Millisecond)
	if p2, _ := s.Pending(); p2["r"] != p1["r"] {
		t.Fatalf("pending went from %d to %d after Ingest returned", p1["r"], p2["r"])
	}
	if res := ingestOne(t, s, "after", now); res.Duplicate || res.ID != "after" {
		t.Fatalf("ingest after the failed batch: %+v", res)
	}
}

// TestOverlappingClaims: when a lease runs out mid-attempt, two nodes
// send the same delivery and both record an outcome. Whatever the order,
// and whether or not a node's mirror has seen the other's write, the
// first final outcome stays, every attempt is listed, the event is
// counted off once, and no history is left without an expiry.
func TestOverlappingClaims(t *testing.T) {
	a, b := twoNodes(t)
	now := time.Now()
	ctx := context.Background()
	for _, id := range []string{"e1", "e2", "e3"} {
		ingestOne(t, a, id, now)
	}
	eventually(t, "b sees the deliveries", func() bool {
		for _, id := range []string{"e1/r", "e2/r", "e3/r"} {
			if _, ok := b.mirror.delivery(id); !ok {
				return false
			}
		}
		return true
	})
	// b's mirror then stops following the server: it keeps the records
	// as ingested, and what a writes b learns only by reading the
	// server, as when its watch lags.
	b.mirror.stopWatch()
	check := func(id string, status persist.Status, attempts string) {
		t.Helper()
		d, err := a.fetchDelivery(ctx, id)
		if err != nil || d.Status != status {
			t.Fatalf("%s: %+v %v, want %s", id, d, err, status)
		}
		as, err := a.Attempts(id)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, at := range as {
			got = append(got, fmt.Sprint(at.Status))
		}
		if fmt.Sprint(got) != attempts {
			t.Fatalf("attempts of %s = %v, want %s", id, got, attempts)
		}
		m, err := a.attempts.stream.GetLastMsgForSubject(ctx, a.attempts.subj+enc(id))
		if err != nil {
			t.Fatalf("history of %s: %v", id, err)
		}
		if m.Header.Get("Nats-TTL") == "" {
			t.Fatalf("history of %s has no expiry: it would outlive its delivery", id)
		}
		ev, err := a.Event(strings.TrimSuffix(id, "/r"))
		if err != nil || ev.Remaining != 0 || ev.KeepUntil == 0 {
			t.Fatalf("event of %s: %+v %v, want it finished once", id, ev, err)
		}
	}

	// a's retry is written first; b, whose record is stale, records the
	// final first attempt.
	recordOutcome(t, a, "e1/r", persist.StatusPending, 1, 500)
	recordOutcome(t, b, "e1/r", persist.StatusDelivered, 1, 200)
	check("e1/r", persist.StatusDelivered, "[500 200]")

	// b's final outcome first; a's late retry must not make the
	// delivery pending again.
	recordOutcome(t, b, "e2/r", persist.StatusDelivered, 1, 200)
	recordOutcome(t, a, "e2/r", persist.StatusPending, 1, 500)
	check("e2/r", persist.StatusDelivered, "[200 500]")
	if p, err := a.Pending(); err != nil || p["r"] != 1 {
		t.Fatalf("pending after a late retry: %v %v, want only e3/r", p, err)
	}

	// Two final outcomes: the first stays, the second joins the history.
	recordOutcome(t, a, "e3/r", persist.StatusDelivered, 1, 200)
	recordOutcome(t, b, "e3/r", persist.StatusDead, 1, 410)
	check("e3/r", persist.StatusDelivered, "[200 410]")
}

// TestLoadJobs: deliveries with their events, as the engine loads them
// to send. An event this node ingested comes from the record it wrote,
// for the deliveries created with it; anything else is read from the
// server.
func TestLoadJobs(t *testing.T) {
	a, b := twoNodes(t)
	ctx := context.Background()
	received := time.Now()
	ingest := func(id string) {
		t.Helper()
		in := persist.Ingest{
			Event:      &persist.Event{ID: id, Type: "t", Received: received, Data: []byte(`{"n":"` + id + `"}`)},
			Deliveries: []*persist.Delivery{{ID: id + "/r", EventID: id, Route: "r", Created: received, Due: received}},
		}
		if _, err := a.Ingest(ctx, []persist.Ingest{in}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"e1", "e2", "e3"} {
		ingest(id)
	}
	recordOutcome(t, a, "e2/r", persist.StatusDelivered, 1, 200)
	eventually(t, "b sees the deliveries", func() bool {
		_, ok1 := b.mirror.delivery("e1/r")
		_, ok3 := b.mirror.delivery("e3/r")
		return ok1 && ok3
	})

	for name, s := range map[string]*Store{"the ingesting node": a, "another node": b} {
		jobs, err := s.LoadJobs([]string{"e1/r", "e2/r", "nope"})
		if err != nil || len(jobs) != 3 {
			t.Fatalf("%s: %d jobs, %v", name, len(jobs), err)
		}
		if j := jobs[0]; j.Err != nil || j.Delivery == nil || j.Delivery.ID != "e1/r" || j.Event == nil ||
			j.Event.ID != "e1" || string(j.Event.Data) != `{"n":"e1"}` {
			t.Errorf("%s: pending delivery: %+v", name, j)
		}
		if j := jobs[1]; j.Err != nil || j.Delivery == nil || j.Delivery.Status != persist.StatusDelivered || j.Event != nil {
			t.Errorf("%s: delivered delivery: %+v (want the delivery, no event, no error)", name, j)
		}
		if j := jobs[2]; !errors.Is(j.Err, persist.ErrNotFound) || j.Delivery != nil {
			t.Errorf("%s: unknown id: %+v (want ErrNotFound)", name, j)
		}
	}

	// What a keeps of e3 is used for a delivery created with it, and
	// only for one: a record planted in its place shows which was read.
	in, ok := a.ingested.get("e3")
	if !ok {
		t.Fatal("a kept nothing of the event it ingested")
	}
	planted := in.rec.private()
	planted.Event.ID = "XX"
	a.ingested.put("e3", ingestedEvent{planted, in.rev, in.received}, 100)
	if jobs, _ := a.LoadJobs([]string{"e3/r"}); jobs[0].Event == nil || jobs[0].Event.ID != "XX" {
		t.Fatalf("the delivery created with the event was loaded from the server: %+v", jobs[0])
	}
	a.ingested.put("e3", ingestedEvent{planted, in.rev, in.received.Add(time.Second)}, 100)
	if jobs, _ := a.LoadJobs([]string{"e3/r"}); jobs[0].Event == nil || jobs[0].Event.ID != "e3" {
		t.Fatalf("a record of another event of that id was used: %+v", jobs[0])
	}

	// A pending delivery whose event is gone.
	if _, err := a.events.del(ctx, "e1", 0, 0); err != nil {
		t.Fatal(err)
	}
	a.ingested.take("e1")
	if jobs, _ := b.LoadJobs([]string{"e1/r"}); !errors.Is(jobs[0].Err, persist.ErrNotFound) || jobs[0].Delivery == nil {
		t.Fatalf("pending delivery without its event: %+v (want the delivery and ErrNotFound)", jobs[0])
	}

	a.Close()
	if _, err := a.LoadJobs([]string{"e3/r"}); !errors.Is(err, persist.ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
}

// TestCountDownStartsFromIngestedRecord: a delivery the engine was
// handed at ingest is counted off its event starting from the record
// this node wrote, without reading it; a stale one only fails the
// compare-and-set. A planted field shows which record the update
// started from.
func TestCountDownStartsFromIngestedRecord(t *testing.T) {
	a, _ := twoNodes(t)
	ctx := context.Background()
	now := time.Now()
	for i, stale := range []bool{false, true} {
		id := fmt.Sprintf("e%d", i)
		ingestOne(t, a, id, now)
		in, ok := a.ingested.get(id)
		if !ok {
			t.Fatalf("%s: a kept nothing of the event it ingested", id)
		}
		planted := in.rec.private()
		planted.Event.Source = "planted"
		rev := in.rev
		if stale {
			rev--
		}
		a.ingested.put(id, ingestedEvent{planted, rev, in.received}, 100)
		recordOutcome(t, a, id+"/r", persist.StatusDelivered, 1, 200)
		e, err := a.events.get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		r, err := decodeEvent(e.val)
		if err != nil {
			t.Fatal(err)
		}
		if r.Event.Remaining != 0 || r.Event.KeepUntil == 0 {
			t.Fatalf("%s after its delivery: %+v, want it finished", id, r.Event)
		}
		if got, want := r.Event.Source == "planted", !stale; got != want {
			t.Fatalf("%s (stale %v): the update started from the ingested record: %v, want %v", id, stale, got, want)
		}
	}

	// An event with two deliveries: the second count-down starts from
	// the record the first one wrote.
	ingestRoutes(t, a, "two", now, "1", "2")
	recordOutcome(t, a, "two-1", persist.StatusDelivered, 1, 200)
	re, ok := a.recent.take("two")
	if !ok || re.rec.Event.Remaining != 1 {
		t.Fatalf("after the first count-down: %+v %v, want the record it wrote, 1 remaining", re.rec, ok)
	}
	re.rec.Event.Source = "planted"
	a.recent.put("two", re, 100)
	recordOutcome(t, a, "two-2", persist.StatusDelivered, 1, 200)
	e, err := a.events.get(ctx, "two")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := decodeEvent(e.val); err != nil || r.Event.Remaining != 0 || r.Event.Source != "planted" {
		t.Fatalf("after the second count-down: %+v %v, want it finished, from the record the first wrote", r, err)
	}

	// What is kept is a copy: a caller reusing its buffers changes
	// nothing.
	buf := []byte(`{"n":1}`)
	in := persist.Ingest{
		Event:      &persist.Event{ID: "own", Type: "t", Received: now, Data: buf},
		Deliveries: []*persist.Delivery{{ID: "own/r", EventID: "own", Route: "r", Created: now, Due: now}},
	}
	if _, err := a.Ingest(ctx, []persist.Ingest{in}); err != nil {
		t.Fatal(err)
	}
	copy(buf, `{"n":2}`)
	if jobs, _ := a.LoadJobs([]string{"own/r"}); jobs[0].Event == nil || string(jobs[0].Event.Data) != `{"n":1}` {
		t.Fatalf("event loaded after the caller changed its buffer: %+v", jobs[0].Event)
	}
}
