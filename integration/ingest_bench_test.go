package integration

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"
)

// BenchmarkIngestInProcess posts 1 KB single events from parallel
// keep-alive clients to an in-process gateway whose route is held (nothing
// delivered), for CPU profiles of the ingest path:
//
//	go test ./integration -run '^$' -bench IngestInProcess -cpuprofile cpu.out
func BenchmarkIngestInProcess(b *testing.B) {
	hole := newBlackHole(b)
	g := startGateway(b, `{
	admin {ADMIN}
	persist_config off
	log {
		level ERROR
	}
	webhooks {
		storage {STORAGE}
		egress default {
			allow 127.0.0.1/32
		}
		route load {
			topics load.*
			url `+hole.URL+`
			concurrency 1
			timeout 1h
		}
	}
}
http://127.0.0.1:{PORT} {
	webhook_ingest /events
}
`)
	body := eventBody("load.single", 1, 0, 0, eventSize)
	client := newLoadClient(64)
	b.SetParallelism(32)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(g.ingest+"/events", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	hole.close()
}
