package module

import (
	"testing"
	"time"
)

// Live subscribers see each outcome once it is recorded; one that does
// not read holds nothing up and is told what it missed; cancel closes.
func TestSubscribeSeesOutcomesAndNeverBlocks(t *testing.T) {
	sink := newCountingSink(t, func(n int64) int {
		if n == 0 {
			return 503
		}
		return 200
	})
	te := startTestEngine(t, "", map[string]*Route{"a": {URL: sink.URL, Concurrency: 1,
		Retry: &RetryPolicy{Schedule: durs(10 * time.Millisecond)}}}, nil)
	live, _, cancel := te.Subscribe(16)
	stuck, dropped, cancelStuck := te.Subscribe(1) // never read
	defer cancelStuck()

	id := te.post(`{"n":1}`)
	var got []Outcome
	deadline := time.After(10 * time.Second)
	for len(got) < 2 {
		select {
		case o := <-live:
			got = append(got, o)
		case <-deadline:
			t.Fatalf("outcomes seen: %+v, want a retry then a delivery", got)
		}
	}
	if got[0].Status != "retry" || got[0].HTTPStatus != 503 || got[0].Class != "http_5xx" || got[0].Next.IsZero() ||
		got[0].EventID != id || got[0].Route != "a" || got[0].EventType != "test.event" || got[0].Attempt != 1 {
		t.Errorf("first outcome %+v, want a retry after 503 for event %s", got[0], id)
	}
	if got[1].Status != "delivered" || got[1].HTTPStatus != 200 || got[1].Attempt != 2 || got[1].Class != "" {
		t.Errorf("second outcome %+v, want delivered on attempt 2", got[1])
	}
	// More deliveries go through although the stuck subscriber's buffer
	// is full.
	for i := 0; i < 5; i++ {
		te.post(`{}`)
	}
	waitUntil(t, "five more deliveries", func() bool { return te.stats("a").Delivered == 6 })
	if len(stuck) != 1 || dropped() != 6 {
		t.Errorf("stuck subscriber: %d buffered, %d dropped; want 1 and 6", len(stuck), dropped())
	}
	cancel()
	cancel() // idempotent
	for range live {
	}
}
