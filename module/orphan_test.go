package module

import (
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// A pending delivery whose event is gone (an outbox written when a
// reused id could overwrite an event and let it expire) must not stay
// pending for ever: the scan makes it dead, without a request, saying
// why, and the route goes on.
func TestDeliveryWithoutEventBecomesDead(t *testing.T) {
	dir := t.TempDir()
	s, err := persist.Open(persist.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	due := time.Now().Add(-time.Minute)
	orphan := &persist.Delivery{ID: "dlv_orphan", EventID: "evt_gone", Route: "a",
		Status: persist.StatusPending, Created: due, Due: due}
	done := make(chan error, 1)
	s.Record(persist.Outcome{Delivery: orphan, ClaimedDue: due}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	sink := newCountingSink(t, nil)
	te := startTestEngine(t, dir, map[string]*Route{"a": {URL: sink.URL}}, nil)
	waitUntil(t, "the delivery without event to be dead", func() bool {
		st := te.stats("a")
		return st.Dead == 1 && st.Pending == 0
	})
	d, err := te.store.Delivery("dlv_orphan")
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != persist.StatusDead || d.Attempts != 0 || !strings.Contains(d.LastError, "evt_gone is no longer stored") {
		t.Fatalf("delivery without event = %+v, want dead, no attempt, and why", d)
	}
	if n := sink.posts.Load(); n != 0 {
		t.Fatalf("%d requests for a delivery without event, want none", n)
	}
	te.post(`{}`)
	waitUntil(t, "a new event to be delivered", func() bool { return te.stats("a").Delivered == 1 })
}
