package persist

import (
	"bytes"
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/procstat"
)

var payload1K = append(append([]byte(`{"pad":"`), bytes.Repeat([]byte("x"), 1024-11)...), `"}`...)

// BenchmarkIngestParallel measures durable ingest through the group
// committer: 32 goroutines per CPU, one 1 KB event with one delivery per
// call, each call returning only once its write is synced.
func BenchmarkIngestParallel(b *testing.B) {
	var rounds atomic.Int64
	s := openStore(b, Options{beforeJournalSync: func() { rounds.Add(1) }})
	var seq atomic.Int64
	b.SetParallelism(32)
	b.SetBytes(int64(len(payload1K)))
	b.ReportAllocs()
	cpu0 := procstat.SelfCPU()
	b.ResetTimer()
	rounds.Store(0)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			id := "ev" + strconv.FormatInt(seq.Add(1), 10)
			in := Ingest{
				Event:      &Event{ID: id, Type: "bench", Time: t0, Received: t0, Data: payload1K},
				Deliveries: []*Delivery{newDelivery(id+"/r", id, "r", t0)},
				Fresh:      true, // as the gateway's own ids are
			}
			if _, err := s.Ingest(ctx, []Ingest{in}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/float64(max(rounds.Load(), 1)), "events/sync")
	b.ReportMetric(float64(procstat.SelfCPU()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/event")
}

// BenchmarkRecord measures final outcomes written by concurrent workers
// (as the dispatchers do), each waiting for its done callback.
func BenchmarkRecord(b *testing.B) {
	s := openStore(b, Options{})
	// Set up b.N pending deliveries, in big batches to keep set-up short.
	ds := make([]*Delivery, b.N)
	for i := 0; i < b.N; i += 500 {
		var batch []Ingest
		for j := i; j < min(i+500, b.N); j++ {
			id := "ev" + strconv.Itoa(j)
			ds[j] = newDelivery(id+"/r", id, "r", t0)
			batch = append(batch, Ingest{Event: &Event{ID: id, Type: "bench", Time: t0, Received: t0, Data: payload1K}, Deliveries: []*Delivery{ds[j]}})
		}
		ingest(b, s, batch...)
	}
	var next atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	cpu0 := procstat.SelfCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		done := make(chan error, 1)
		for pb.Next() {
			d := *ds[next.Add(1)-1]
			d.Status = StatusDelivered
			d.Attempts = 1
			d.Done = t0
			s.Record(Outcome{Delivery: &d, ClaimedDue: t0,
				Attempt: &Attempt{N: 1, Start: t0, Duration: time.Millisecond, Status: 200}},
				func(err error) { done <- err })
			if err := <-done; err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(procstat.SelfCPU()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/record")
	b.StopTimer()
	if p := mustPending(b, s); p["r"] != 0 {
		b.Fatalf("%d still pending after recording all", p["r"])
	}
}
