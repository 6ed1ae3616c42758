package module

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/hookgate/hookgate/persist"
)

// BenchmarkAdminStats1MPending measures GET /webhooks/stats through the
// admin handler on an engine whose outbox holds 1,000,000 pending
// deliveries over 20 routes (none running, so they stay pending). Stats
// come from in-memory counters: the outbox is not read.
func BenchmarkAdminStats1MPending(b *testing.B) {
	const (
		pending = 1_000_000
		routes  = 20
		batch   = 1000
	)
	dir := b.TempDir()
	st, err := persist.Open(persist.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 0; i < pending; i += batch {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			now := time.Now()
			in := make([]persist.Ingest, 0, batch)
			for j := i; j < i+batch; j++ {
				id := fmt.Sprintf("e%07d", j)
				route := fmt.Sprintf("route-%02d", j%routes)
				in = append(in, persist.Ingest{
					Event: &persist.Event{ID: id, Type: "bench", Time: now, Received: now, Data: []byte(`{"n":1}`), Routes: []string{route}},
					Deliveries: []*persist.Delivery{{ID: id + "/d", EventID: id, Route: route,
						Status: persist.StatusPending, Created: now, Due: now}},
				})
			}
			if _, err := st.Ingest(context.Background(), in); err != nil {
				b.Error(err)
			}
		}(i)
	}
	wg.Wait()
	st.Close()
	b.Logf("%d pending deliveries stored in %v", pending, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	e, err := openEngine(dir, zap.NewNop(), persist.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Destruct()
	b.Logf("engine opened (pending counted) in %v", time.Since(start).Round(time.Millisecond))
	if n := e.pending.Load(); n != pending {
		b.Fatalf("engine counts %d pending, want %d", n, pending)
	}
	a := adminFor(e)
	b.Run("stats", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			req := httptest.NewRequest("GET", "/webhooks/stats", nil)
			rec := httptest.NewRecorder()
			a.serve(rec, req)
			if rec.Code != 200 {
				b.Fatalf("%d %s", rec.Code, rec.Body)
			}
		}
	})
}
