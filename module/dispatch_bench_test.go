package module

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/hookgate/hookgate/internal/procstat"
	"github.com/hookgate/hookgate/persist"
)

// BenchmarkDispatchRoutes drains a backlog of deliveries spread over 1
// or 100 routes, each with its own endpoint (an httptest server on
// loopback answering 200 at once) and the default concurrency of 16:
// how per-route dispatchers share the machine. The backlog is ingested
// before the clock starts; the figure is deliveries/s from start until
// the last outcome is recorded.
//
//	go test ./module -run '^$' -bench DispatchRoutes -benchtime 3x
func BenchmarkDispatchRoutes(b *testing.B) {
	for _, routes := range []int{1, 100} {
		b.Run(fmt.Sprintf("routes=%d", routes), func(b *testing.B) {
			benchDispatch(b, routes, 20000)
		})
	}
}

func benchDispatch(b *testing.B, nroutes, total int) {
	var got atomic.Int64
	sinks := make([]*httptest.Server, nroutes)
	for i := range sinks {
		sinks[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			got.Add(1)
		}))
		defer sinks[i].Close()
	}
	var elapsed time.Duration
	for it := 0; it < b.N; it++ {
		b.StopTimer()
		e, err := openEngine(b.TempDir(), zap.NewNop(), persist.Options{})
		if err != nil {
			b.Fatal(err)
		}
		routes := make(map[string]*route, nroutes)
		for i := range nroutes {
			name := fmt.Sprintf("r%03d", i)
			r, err := compileRoute(name, &Route{Topics: []string{"*"}, URL: sinks[i].URL + "/hook"})
			if err != nil {
				b.Fatal(err)
			}
			routes[name] = r
		}
		// The backlog: total events of about 1 KB, one delivery each,
		// round-robin over the routes, in batches like the ingest API's.
		data := []byte(fmt.Sprintf(`{"pad":"%0900d"}`, 0))
		now := time.Now()
		for start := 0; start < total; start += 500 {
			batch := make([]persist.Ingest, 0, 500)
			for i := start; i < start+500 && i < total; i++ {
				ev := &persist.Event{ID: newID("evt_", now), Type: "bench", Time: now, Received: now, Data: data}
				name := fmt.Sprintf("r%03d", i%nroutes)
				ev.Routes = []string{name}
				batch = append(batch, persist.Ingest{Event: ev, Deliveries: []*persist.Delivery{{
					ID: newID("dlv_", now), EventID: ev.ID, Route: name, Status: persist.StatusPending, Created: now, Due: now,
				}}})
			}
			if _, err := e.store.Ingest(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
		}
		e.Destruct()
		// Reopen, so that the engine finds the backlog as after a restart.
		dir := e.dir
		e, err = openEngine(dir, zap.NewNop(), persist.Options{})
		if err != nil {
			b.Fatal(err)
		}
		got.Store(0)
		b.StartTimer()
		began := time.Now()
		if err := e.start(&runtimeConfig{routes: routes, maxPending: 1 << 40, logger: zap.NewNop()}); err != nil {
			b.Fatal(err)
		}
		for e.pending.Load() > 0 {
			time.Sleep(time.Millisecond)
		}
		elapsed += time.Since(began)
		b.StopTimer()
		if n := got.Load(); n < int64(total) {
			b.Fatalf("sinks got %d of %d deliveries", n, total)
		}
		e.Destruct()
	}
	b.ReportMetric(float64(total*b.N)/elapsed.Seconds(), "deliveries/s")
}

// BenchmarkAcceptAndDeliver is phase 2b of the load harness in process,
// without the ingest handler: 64 goroutines each Accept one ~1 KB event
// at a time while the route (concurrency 64) delivers to a loopback sink
// answering 200. One op is one event accepted and delivered; allocations
// and cpu-µs/op (the process's CPU time) include the outbox's, the
// sink's and the load's.
//
//	go test ./module -run '^$' -bench AcceptAndDeliver -benchmem
func BenchmarkAcceptAndDeliver(b *testing.B) {
	var got atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got.Add(1)
	}))
	defer sink.Close()
	e, err := openEngine(b.TempDir(), zap.NewNop(), persist.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Destruct()
	r, err := compileRoute("load", &Route{Topics: []string{"load.*"}, URL: sink.URL + "/in", Concurrency: 64})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.start(&runtimeConfig{routes: map[string]*route{"load": r}, order: []string{"load"}, maxPending: 1 << 40, logger: zap.NewNop()}); err != nil {
		b.Fatal(err)
	}
	data := []byte(fmt.Sprintf(`{"pad":"%0900d"}`, 0))
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := procstat.SelfCPU()
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := e.Accept(context.Background(), []*persist.Event{{Type: "load.single", Data: data}}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(time.Minute)
	for got.Load() < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64((procstat.SelfCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	if n := got.Load(); n < int64(b.N) {
		b.Fatalf("sink got %d of %d deliveries", n, b.N)
	}
}
