package persist

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The footprint and outcome-path benchmarks. Events and deliveries look
// like the engine's: ids of the length newID makes, a type, a source, one
// route, a 1 KB payload, an attempt with a short response.

func benchIngest(i int, at time.Time) Ingest {
	id := fmt.Sprintf("evt_%026d", i)
	d := &Delivery{
		ID:        fmt.Sprintf("dlv_%026d", i),
		EventID:   id,
		Route:     "billing",
		EventType: "invoice.paid",
		Status:    StatusPending,
		Created:   at,
		Due:       at,
	}
	return Ingest{
		Event: &Event{ID: id, Type: "invoice.paid", Source: "billing-service", Time: at, Received: at,
			Routes: []string{"billing"}, Data: payload1K},
		Deliveries: []*Delivery{d},
		Dedupe:     id,
	}
}

// benchDelivered is the outcome the engine records for d delivered at
// its first attempt.
func benchDelivered(d *Delivery, at time.Time) Outcome {
	nd := *d
	nd.Status, nd.Attempts = StatusDelivered, 1
	nd.LastAttempt, nd.LastStatus = at, 200
	nd.Done = at.Add(12 * time.Millisecond)
	return Outcome{Delivery: &nd, ClaimedDue: d.Due, Attempt: &Attempt{
		N: 1, Start: at, Duration: 12 * time.Millisecond, Status: 200, Response: []byte(`{"ok":true}`),
	}}
}

// fillDelivered ingests n events with one delivery each, in batches of
// 500 from 8 goroutines, and records every delivery delivered, as the
// footprint test does.
func fillDelivered(tb testing.TB, s *Badger, n int) {
	tb.Helper()
	const batchSize = 500
	var (
		wg   sync.WaitGroup
		errs = make(chan error, 1)
		sem  = make(chan struct{}, 8)
	)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	now := time.Now()
	for i := 0; i < n; i += batchSize {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			var batch []Ingest
			for j := i; j < min(i+batchSize, n); j++ {
				batch = append(batch, benchIngest(j, now))
			}
			if _, err := s.Ingest(tb.Context(), batch); err != nil {
				fail(err)
				return
			}
			var rec sync.WaitGroup
			for _, in := range batch {
				rec.Add(1)
				s.Record(benchDelivered(in.Deliveries[0], now), func(err error) {
					if err != nil {
						fail(err)
					}
					rec.Done()
				})
			}
			rec.Wait()
		}(i)
	}
	wg.Wait()
	select {
	case err := <-errs:
		tb.Fatal(err)
	default:
	}
}

// settleLikeGC brings the outbox to what a long-running one looks like:
// the LSM tree compacted (as Badger's compactors eventually do, which
// drops overwritten versions and counts their value-log garbage), then
// value-log GC run as gcLoop runs it, at a discard ratio of 0.5, until
// it finds no file worth rewriting.
func settleLikeGC(tb testing.TB, s *Badger) {
	tb.Helper()
	if err := s.flattenAll(); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		err := s.runValueLogGC(0.5)
		if errors.Is(err, badger.ErrRejected) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			break
		}
	}
}

// BenchmarkDiskPerDeliveredEvent measures the disk a retained delivered
// event takes: b.N events of 1 KB with one delivery each are ingested
// and recorded delivered, with the default (72 h) retention so all are
// kept. B/event-raw is the directory's footprint per event once the
// store is closed; B/event is the footprint after a reopen (which lets
// GC collect the value-log file that was being written), an LSM
// compaction and value-log GC at gcLoop's ratio: the steady state.
// Run it at a fixed count: -benchtime=100000x.
func BenchmarkDiskPerDeliveredEvent(b *testing.B) {
	dir := b.TempDir()
	s := openStore(b, Options{Dir: dir})
	b.ResetTimer()
	fillDelivered(b, s, b.N)
	b.StopTimer()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	raw, _ := footprint(b, dir)
	s = openStore(b, Options{Dir: dir})
	settleLikeGC(b, s)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	settled, _ := footprint(b, dir)
	b.ReportMetric(float64(raw)/float64(b.N), "B/event-raw")
	b.ReportMetric(float64(settled)/float64(b.N), "B/event")
}

// BenchmarkRecordApply measures the committer's work for a delivered
// outcome alone: applyRecord on b.N delivered deliveries, 256 to a
// transaction, without the commits (which are timed out) nor the
// committer's queueing. ns/op and allocs/op are per outcome.
// Run it at a fixed count, e.g. -benchtime=50000x: set-up ingests b.N.
func BenchmarkRecordApply(b *testing.B) {
	s := openStore(b, Options{})
	now := time.Now()
	ds := make([]*Delivery, b.N)
	for i := 0; i < b.N; i += 500 {
		var batch []Ingest
		for j := i; j < min(i+500, b.N); j++ {
			in := benchIngest(j, now)
			ds[j] = in.Deliveries[0]
			batch = append(batch, in)
		}
		ingest(b, s, batch...)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 256 {
		txn := s.db.NewTransaction(true)
		for _, d := range ds[i:min(i+256, b.N)] {
			if err := s.applyRecord(txn, benchDelivered(d, now)); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if err := txn.Commit(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	if p := mustPending(b, s); p["billing"] != 0 {
		b.Fatalf("%d still pending after recording all", p["billing"])
	}
}
