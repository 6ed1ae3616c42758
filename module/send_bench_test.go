package module

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// BenchmarkSenderAttempt is one delivery attempt of a 1 KB event (the
// standard envelope, unsigned, no extra headers) to a loopback sink that
// answers 200, with no tracing configured: the per-delivery HTTP cost of
// the sender, without the outbox. 16 attempts run at once.
//
//	go test ./module -run '^$' -bench SenderAttempt -benchmem
func BenchmarkSenderAttempt(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	r := benchRoute(b, &Route{URL: srv.URL + "/in", Timeout: caddy.Duration(10 * time.Second)})
	s := newSender()
	ev := benchEvent()
	b.ReportAllocs()
	b.SetParallelism(8) // 16 on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			j := &job{ev: ev}
			res := s.attempt(context.Background(), r, j, time.Now())
			if !res.ok() {
				b.Error(res.class, res.err)
				return
			}
		}
	})
}
