package egress

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkEgressCheck is the per-connection policy check (run in the
// dialer and again in the socket's Control hook).
//
//	go test ./module/egress -run '^$' -bench EgressCheck -benchmem
func BenchmarkEgressCheck(b *testing.B) {
	p := testPolicy(b, Policy{Allow: []string{"127.0.0.1/32", "10.20.0.0/16"}, Deny: []string{"10.20.9.0/24"}})
	for _, tc := range []struct{ name, addr string }{
		{"public-v4", "93.184.215.14"},
		{"public-v6", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"},
		{"allowed-loopback", "127.0.0.1"},
		{"allowed-private", "10.20.1.1"},
		{"nat64-public", "64:ff9b::5db8:d70e"},
		{"denied-metadata", "169.254.169.254"},
	} {
		a := netip.MustParseAddr(tc.addr)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_ = p.refusal(a, toDest)
			}
		})
	}
}

// BenchmarkEgressDelivery runs whole POSTs (send, read the answer)
// against a loopback sink, through a plain transport and through a
// policy that allows 127.0.0.1/32, with 16
// attempts in flight (a route's default concurrency). It reports
// deliveries/s and new connections per 1,000 deliveries.
//
//	go test ./module/egress -run '^$' -bench EgressDelivery -benchtime 20000x -count 5
func BenchmarkEgressDelivery(b *testing.B) {
	for _, mode := range []string{"plain", "policy"} {
		b.Run(mode, func(b *testing.B) {
			var conns atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusNoContent)
			}))
			srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
				if st == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			defer srv.Close()

			plain := NewHTTPClient(NewTransport((&net.Dialer{Timeout: dialTimeout}).DialContext, nil), nil)
			hc := plain
			if mode == "policy" {
				c := newClient(testPolicy(b, Policy{Allow: []string{"127.0.0.1/32"}}))
				defer c.Destruct()
				hc = c.HTTP()
			}
			var failed, next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := 0; w < 16; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						resp, err := hc.Post(srv.URL+"/hook", "application/json", strings.NewReader(`{"id":"evt_1"}`))
						if err != nil {
							failed.Add(1)
							continue
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusNoContent {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d attempts failed", n)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
			b.ReportMetric(float64(conns.Load())*1000/float64(b.N), "conns/1000")
		})
	}
}
