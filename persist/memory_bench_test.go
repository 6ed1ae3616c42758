package persist

import (
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/hookgate/hookgate/internal/procstat"
)

// BenchmarkBacklogMemory measures the process's memory with a large
// backlog of pending deliveries, ingested as the load harness's backlog
// phase does: batches of 1000 1 KB events (no idempotency key), one
// delivery each, from 4 goroutines. It reports the anonymous memory
// (RssAnon) and the Go heap 1 s after the ingest, and again after a rest.
// It runs once whatever b.N is; run it as
//
//	go test ./persist -run '^$' -bench BacklogMemory -benchtime 1x
//
// HOOKGATE_BACKLOG_N sets the backlog (default 1,000,000),
// HOOKGATE_BACKLOG_REST the rest (default 30s, 0 skips),
// HOOKGATE_BACKLOG_HEAPPROFILE a file to write a heap profile to (taken
// 1 s after the ingest).
func BenchmarkBacklogMemory(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("HOOKGATE_BACKLOG_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("HOOKGATE_BACKLOG_N: %v", err)
		}
	}
	rest := 30 * time.Second
	if v := os.Getenv("HOOKGATE_BACKLOG_REST"); v != "" {
		var err error
		if rest, err = time.ParseDuration(v); err != nil {
			b.Fatalf("HOOKGATE_BACKLOG_REST: %v", err)
		}
	}
	s := openStore(b, Options{tune: tuneFromEnv(b)})
	b.ResetTimer()
	start := time.Now()
	cpu0 := procstat.SelfCPU()
	ingestBacklog(b, s, n, 4, 1000)
	took := time.Since(start)
	cpu := procstat.SelfCPU() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(n)/took.Seconds(), "events/s")
	b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(n), "cpu-µs/event")

	time.Sleep(time.Second)
	report := func(when string) {
		// CPU including the compactions the ingest left to do.
		b.ReportMetric(float64(procstat.SelfCPU()-cpu0)/float64(time.Microsecond)/float64(n), "cpu-µs/event-"+when)
		m, err := procstat.Mem(0)
		if err != nil {
			b.Skipf("no memory figures here: %v", err)
		}
		b.ReportMetric(float64(m.Anon)/(1<<20), "anon-MiB-"+when)
		b.ReportMetric(float64(m.RSS)/(1<<20), "rss-MiB-"+when)
		h := heapFigures()
		b.ReportMetric(h.live/(1<<20), "heap-live-MiB-"+when)
		b.ReportMetric(h.mapped/(1<<20), "heap-mapped-MiB-"+when)
		b.ReportMetric(h.released/(1<<20), "heap-released-MiB-"+when)
	}
	report("1s")
	b.Logf("levels 1 s after the ingest:\n%s", s.db.LevelsToString())
	for _, t := range s.db.Tables() {
		if t.Level == 0 {
			b.Logf("L0 table %d: %d B on disk, %d keys", t.ID, t.OnDiskSize, t.KeyCount)
		}
	}
	if f := os.Getenv("HOOKGATE_BACKLOG_HEAPPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		// The heap as of the last GC: no GC is forced, which would change
		// the figures after the rest.
		if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
			b.Fatal(err)
		}
		out.Close()
	}
	if rest > 0 {
		time.Sleep(rest)
		report("rest")
	}
}

// ingestBacklog ingests n events of 1 KB with one pending delivery each,
// in batches of batchSize from posters goroutines.
func ingestBacklog(tb testing.TB, s *Badger, n, posters, batchSize int) {
	tb.Helper()
	now := time.Now()
	var (
		next   atomic.Int64
		wg     sync.WaitGroup
		failed atomic.Pointer[error]
	)
	for range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for failed.Load() == nil {
				from := int(next.Add(int64(batchSize))) - batchSize
				if from >= n {
					return
				}
				batch := make([]Ingest, 0, batchSize)
				for i := from; i < min(from+batchSize, n); i++ {
					in := benchIngest(i, now)
					in.Dedupe = ""
					batch = append(batch, in)
				}
				if _, err := s.Ingest(tb.Context(), batch); err != nil {
					failed.Store(&err)
				}
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		tb.Fatal(*err)
	}
}

// heapStats are the Go heap's figures, in bytes: live as of the last GC,
// mapped (spans in use or free but not returned) and released to the OS.
type heapStats struct{ live, mapped, released float64 }

func heapFigures() heapStats {
	ms := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(ms)
	return heapStats{live: float64(ms[0].Value.Uint64()), mapped: float64(heapHeld()), released: float64(ms[1].Value.Uint64())}
}

// tuneFromEnv changes Badger's options from HOOKGATE_BACKLOG_TUNE, a
// comma-separated list of name=value (memtable, basetable, mult,
// memtables, compactors, l0, l0stall, baselevel: sizes in bytes), to try
// settings without rebuilding.
func tuneFromEnv(tb testing.TB) func(badger.Options) badger.Options {
	v := os.Getenv("HOOKGATE_BACKLOG_TUNE")
	if v == "" {
		return nil
	}
	return func(o badger.Options) badger.Options {
		for _, kv := range strings.Split(v, ",") {
			k, val, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseInt(val, 0, 64)
			if err != nil {
				tb.Fatalf("HOOKGATE_BACKLOG_TUNE %s: %v", kv, err)
			}
			switch k {
			case "memtable":
				o = o.WithMemTableSize(n)
			case "basetable":
				o = o.WithBaseTableSize(n)
			case "mult":
				o.TableSizeMultiplier = int(n)
			case "memtables":
				o = o.WithNumMemtables(int(n))
			case "compactors":
				o = o.WithNumCompactors(int(n))
			case "l0":
				o = o.WithNumLevelZeroTables(int(n))
			case "l0stall":
				o = o.WithNumLevelZeroTablesStall(int(n))
			case "baselevel":
				o = o.WithBaseLevelSize(n)
			default:
				tb.Fatalf("HOOKGATE_BACKLOG_TUNE: unknown %q", k)
			}
		}
		return o
	}
}
