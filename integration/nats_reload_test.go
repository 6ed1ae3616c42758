package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist/nats/natstest"
)

// TestNATSReloadUnderLoad: on a 3-node JetStream cluster (replicas 3),
// clients post events steadily while the config is reloaded ten times
// with changing routes. Every event that got a 202 reaches the route
// that stays in every config, and the goroutine count does not grow
// with the number of reloads (the engine, its connection, watches and
// writers are kept; the dispatchers of a removed route end).
func TestNATSReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a NATS cluster")
	}
	cluster := natstest.RunClusterProcesses(t, 3)
	var (
		mu   sync.Mutex
		keep = make(map[string]int) // Webhook-Id → deliveries by route keep
	)
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keep" {
			mu.Lock()
			keep[r.Header.Get("Webhook-Id")]++
			mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	})
	// Three names for the changing route rotate, as in
	// TestReloadsLeakNoGoroutines: the set of dispatchers keeps its size.
	cfg := func(i int) string {
		return fmt.Sprintf(`{
	admin {ADMIN}
	persist_config off
	webhooks {
		storage nats {
			servers %s
			replicas 3
			prefix reloadload
		}
		egress default {
			allow 127.0.0.1/32
		}
		route r%d {
			topics t.*
			url %s/r
		}
		route keep {
			topics t.*
			url %s/keep
			concurrency %d
		}
	}
}
http://127.0.0.1:{PORT} {
	webhook_ingest /events
}
`, strings.Join(cluster.URLs(), " "), i%3, s.URL, s.URL, 4+i%4)
	}
	g := startGateway(t, cfg(0))

	var (
		acked sync.Map // id → true, for every 202
		total atomic.Int64
	)
	// load posts from a few clients, each at most every 10 ms, until
	// stop is closed. An event refused or cut off by a reload is sent
	// again with the same id (the gateway deduplicates it), so every id
	// ends acknowledged.
	load := func(round int) (stop func()) {
		done := make(chan struct{})
		var wg sync.WaitGroup
		for p := 0; p < 4; p++ {
			wg.Add(1)
			go func(p int) {
				defer wg.Done()
				hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 15 * time.Second}
				for n := 0; n < 100000; n++ {
					select {
					case <-done:
						return
					case <-time.After(10 * time.Millisecond):
					}
					id := fmt.Sprintf("l%d-%d-%d", round, p, n)
					body := fmt.Sprintf(`{"type":"t.x","id":%q,"data":{"n":%d}}`, id, n)
					for try := 0; try < 50; try++ {
						resp, err := hc.Post(g.ingest+"/events", "application/json", strings.NewReader(body))
						if err == nil {
							resp.Body.Close()
							if resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK {
								acked.Store(id, true)
								total.Add(1)
								break
							}
						}
						time.Sleep(20 * time.Millisecond)
					}
				}
			}(p)
		}
		return func() { close(done); wg.Wait() }
	}
	missing := func() []string {
		var out []string
		mu.Lock()
		defer mu.Unlock()
		acked.Range(func(k, _ any) bool {
			if keep[k.(string)] == 0 {
				out = append(out, k.(string))
			}
			return true
		})
		return out
	}
	allDelivered := func(what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			m := missing()
			if len(m) == 0 {
				return
			}
			if time.Now().After(deadline) {
				if len(m) > 10 {
					m = m[:10]
				}
				t.Fatalf("%s: %d of %d acknowledged events never reached route keep, e.g. %v",
					what, len(missing()), total.Load(), m)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	reloads := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			time.Sleep(300 * time.Millisecond)
			g.load(cfg(i))
		}
		time.Sleep(300 * time.Millisecond)
	}

	stop := load(1)
	reloads(1, 2)
	stop()
	allDelivered("after 2 reloads")
	// Idle keep-alive connections to the sink (their number follows the
	// route's concurrency, which the configs vary) are not a leak: close
	// them before each count.
	idleCount := func() int {
		s.srv.SetKeepAlivesEnabled(false)
		defer s.srv.SetKeepAlivesEnabled(true)
		return settledGoroutines()
	}
	base := idleCount()
	n1 := total.Load()

	stop = load(2)
	reloads(3, 12)
	stop()
	if total.Load()-n1 < 100 {
		t.Fatalf("only %d events acknowledged during ten reloads", total.Load()-n1)
	}
	allDelivered("after 12 reloads")
	after := idleCount()
	// Anything kept per reload (a connection, watch, writer or
	// dispatcher) would add at least ten goroutines over ten reloads.
	if after > base+5 {
		t.Errorf("goroutines grew from %d to %d over ten reloads under load", base, after)
	}
	mu.Lock()
	dups := 0
	for _, n := range keep {
		if n > 1 {
			dups++
		}
	}
	mu.Unlock()
	t.Logf("%d events acknowledged, all delivered (%d more than once); goroutines %d after 2 reloads, %d after 12",
		total.Load(), dups, base, after)
}
