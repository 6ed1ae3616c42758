package module

import (
	"context"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// visibleEarlyStore returns from Ingest only after its writes have been
// visible for a while, as the Badger outbox does while it syncs, and
// meanwhile makes the route's dispatcher scan the ready index.
type visibleEarlyStore struct {
	persist.Store
	during func()
}

func (s *visibleEarlyStore) Ingest(ctx context.Context, batch []persist.Ingest) ([]persist.IngestResult, error) {
	res, err := s.Store.Ingest(ctx, batch)
	s.during()
	return res, err
}

// TestDeliveryVisibleBeforeIngestReturnsIsSentOnce: a scan that finds a
// delivery on disk before its Ingest returned must not attempt it, or the
// offer made after Ingest would send it a second time.
func TestDeliveryVisibleBeforeIngestReturnsIsSentOnce(t *testing.T) {
	sink := newCountingSink(t, nil)
	var te *testEngine
	te = startTestEngine(t, "", map[string]*Route{"r": {URL: sink.URL}}, func(e *Engine) {
		e.store = &visibleEarlyStore{Store: e.store, during: func() {
			d := e.dispatcherFor("r")
			d.mu.Lock()
			d.markDisk()
			d.mu.Unlock()
			d.signal()
			// Long enough for a scan to find it, attempt it and record.
			deadline := time.Now().Add(300 * time.Millisecond)
			for sink.posts.Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
		}}
	})
	const n = 5
	for i := 0; i < n; i++ {
		te.post(`{}`)
	}
	waitUntil(t, "every event delivered", func() bool { return sink.posts.Load() >= n })
	waitUntil(t, "nothing pending", func() bool { return te.stats("r").Pending == 0 })
	// Let a second attempt of any of them show.
	time.Sleep(300 * time.Millisecond)
	if got := sink.posts.Load(); got != n {
		t.Fatalf("%d POSTs for %d events: a delivery found on disk before its Ingest returned was sent twice", got, n)
	}
}
