package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCrashLosesNothingAcknowledged kills Caddy with SIGKILL while 16
// clients post events, restarts it on the same storage, and checks that
// every event that got a 202 reaches the sink.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test runs a separate Caddy process")
	}
	var (
		mu       sync.Mutex
		received = make(map[string]int)
	)
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received[r.Header.Get("Webhook-Id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	storage := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
	webhooks {
		storage %s
		# The sinks listen on loopback, which egress policies deny unless allowed.
		egress default {
			allow 127.0.0.1/32
		}
		route sink {
			topics crash.*
			url %s/in
			retry {
				schedule 100ms 200ms 500ms 1s 1s 1s
			}
		}
	}
}
http://%s {
	webhook_ingest /events
}
`, storage, s.URL, addr)

	first := startChild(t, cfg, addr)

	var (
		acked   sync.Map
		nAcked  atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
		posters = 16
	)
	hc := &http.Client{Timeout: 10 * time.Second}
	for p := 0; p < posters; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for n := 0; n < 100000 && !stop.Load(); n++ {
				id := fmt.Sprintf("c-%d-%d", p, n)
				body := fmt.Sprintf(`{"type":"crash.test","id":%q,"data":{"n":%d,"pad":%q}}`, id, n, strings.Repeat("x", 200))
				resp, err := hc.Post("http://"+addr+"/events", "application/json", strings.NewReader(body))
				if err != nil {
					return // the process is gone
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					acked.Store(id, true)
					nAcked.Add(1)
				}
			}
		}(p)
	}
	// Kill mid-way: once a good number of events were acknowledged.
	deadline := time.Now().Add(60 * time.Second)
	for nAcked.Load() < 2000 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	first.kill()
	stop.Store(true)
	wg.Wait()
	total := nAcked.Load()
	if total < 100 {
		t.Fatalf("only %d events acknowledged before the kill; log:\n%s", total, first.tail())
	}
	t.Logf("acknowledged before SIGKILL: %d", total)

	second := startChild(t, cfg, addr)
	defer second.stop(t)
	missing := func() []string {
		var out []string
		mu.Lock()
		defer mu.Unlock()
		acked.Range(func(k, _ any) bool {
			if received[k.(string)] == 0 {
				out = append(out, k.(string))
			}
			return true
		})
		return out
	}
	end := time.Now().Add(120 * time.Second)
	for {
		m := missing()
		if len(m) == 0 {
			break
		}
		if time.Now().After(end) {
			if len(m) > 10 {
				m = m[:10]
			}
			t.Fatalf("%d acknowledged events never delivered, e.g. %v; log:\n%s", len(missing()), m, second.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	dups := 0
	for _, n := range received {
		if n > 1 {
			dups++
		}
	}
	mu.Unlock()
	t.Logf("all %d acknowledged events delivered; %d delivered more than once (allowed: at-least-once)", total, dups)
	_ = s
}
