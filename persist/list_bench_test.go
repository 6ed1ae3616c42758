package persist

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// BenchmarkReplay100kDead measures a replay of 100,000 dead deliveries
// (1 KB events) as the admin API runs it: select ids from the dead index
// in batches of 10,000 and requeue each batch through the committer. Each
// iteration first makes them dead again (not timed). Run it with
// -benchtime=3x.
func BenchmarkReplay100kDead(b *testing.B) {
	const n = 100_000
	s := openStore(b, Options{})
	ds := make([]*Delivery, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 0; i < n; i += 1000 {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			batch := make([]Ingest, 0, 1000)
			for j := i; j < i+1000; j++ {
				id := "ev" + strconv.Itoa(j)
				ds[j] = newDelivery(id+"/r", id, "r", t0)
				batch = append(batch, Ingest{Event: &Event{ID: id, Type: "bench", Time: t0, Received: t0, Data: payload1K},
					Deliveries: []*Delivery{ds[j]}})
			}
			ingest(b, s, batch...)
		}(i)
	}
	wg.Wait()
	kill := func() {
		var done sync.WaitGroup
		for _, d := range ds {
			cur, err := s.Delivery(d.ID)
			if err != nil {
				b.Fatal(err)
			}
			claimed := cur.Due
			cur.Status, cur.Done = StatusDead, time.Now()
			cur.Attempts++
			done.Add(1)
			s.Record(Outcome{Delivery: cur, ClaimedDue: claimed, Attempt: &Attempt{N: cur.Attempts, Start: t0, Status: 400, Class: "http_4xx"}},
				func(err error) {
					if err != nil {
						b.Error(err)
					}
					done.Done()
				})
		}
		done.Wait()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		kill()
		b.StartTimer()
		replayed, cursor := 0, ""
		now := time.Now()
		for {
			ids, next, err := s.ReplayIDs("r", StatusDead, time.Time{}, now, cursor, 10_000)
			if err != nil {
				b.Fatal(err)
			}
			res, err := s.Requeue(ids, now)
			if err != nil {
				b.Fatal(err)
			}
			replayed += len(res)
			if next == "" {
				break
			}
			cursor = next
		}
		if replayed != n {
			b.Fatalf("replayed %d, want %d", replayed, n)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkDeadCounts1M measures DeadCounts over 1,000,000 dead index
// entries spread over 10 routes (ids like real ones, with the dead
// retention's expiry), after a flush to disk as a long-running outbox
// would hold them: the cost of the engine's periodic recount of dead
// deliveries. The entries are written straight into the index (not
// timed); only the count is.
func BenchmarkDeadCounts1M(b *testing.B) {
	const n = 1_000_000
	s := openStore(b, Options{})
	wb := s.db.NewWriteBatch()
	done := time.Now()
	for i := 0; i < n; i++ {
		route := "route-" + strconv.Itoa(i%10)
		id := "dlv_33p6e08z1vf2czjzsc57d" + strconv.Itoa(1_000_000+i)
		e := badger.NewEntry(deadKey(route, done.Add(time.Duration(i)), id), nil).WithTTL(720 * time.Hour)
		if err := wb.SetEntry(e); err != nil {
			b.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := s.Compact(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		counts, err := s.DeadCounts(nil)
		if err != nil {
			b.Fatal(err)
		}
		if counts["route-3"] != n/10 {
			b.Fatalf("counts %v", counts)
		}
	}
}
