package persist

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// liveKeys counts the keys a reader still sees; allKeys counts every
// key version still stored, expired and deleted ones included.
func liveKeys(t testing.TB, s *Badger) int { return countPrefix(t, s, nil) }

func allKeys(t testing.TB, s *Badger) int {
	t.Helper()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.AllVersions = true
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// footprint is the disk space the files under dir take (allocated
// blocks, so sparse preallocation does not count) and their apparent size.
func footprint(t testing.TB, dir string) (used, apparent int64) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		apparent += fi.Size()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			used += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return used, apparent
}

// waitExpired sleeps until a TTL of ttl set at or before last has passed:
// Badger keeps expiry in whole unix seconds.
func waitExpired(last time.Time, ttl time.Duration) {
	until := time.Unix(last.Add(ttl).Unix()+1, 0)
	time.Sleep(time.Until(until))
}

func TestRetentionExpiresEverything(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Retention: 2 * time.Second, DeadRetention: 2 * time.Second, DedupeWindow: 2 * time.Second}
	s := openStore(t, opts)
	var batch []Ingest
	for i := 0; i < 50; i++ {
		in := oneIngest(fmt.Sprintf("e%d", i), t0, "ok", "bad")
		in.Dedupe = in.Event.ID
		batch = append(batch, in)
	}
	ingest(t, s, batch...)
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("e%d", i)
		retryLater(t, s, id+"/bad", t0, t0)
		finish(t, s, id+"/bad", StatusDead, t0)
		finish(t, s, id+"/ok", StatusDelivered, t0)
	}
	last := time.Now()
	if got, _ := mustList(t, s, ListFilter{Status: StatusDead, Limit: 1000}); len(got) != 50 {
		t.Fatalf("%d dead listed before expiry", len(got))
	}
	if n := liveKeys(t, s); n == 0 {
		t.Fatal("no keys before expiry")
	}

	waitExpired(last, opts.Retention)
	// Reads stop seeing expired records at once.
	wantGone(t, s, "e7", "e7/ok", "e7/bad")
	if as, err := s.Attempts("e7/bad"); err != nil || len(as) != 0 {
		t.Fatalf("attempts after expiry: %v %v", as, err)
	}
	for _, st := range []Status{0, StatusPending, StatusDead, StatusDelivered} {
		if got, _ := mustList(t, s, ListFilter{Status: st}); len(got) != 0 {
			t.Fatalf("status %v: %d listed after expiry", st, len(got))
		}
	}
	if ids, _, err := s.ReplayIDs("bad", StatusDead, time.Time{}, time.Time{}, "", 10); err != nil || len(ids) != 0 {
		t.Fatalf("replayable after expiry: %v %v", ids, err)
	}
	// Expired events are deleted by the sweeper, which runs every
	// second: run it now rather than wait for it.
	if err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	if n := liveKeys(t, s); n != 0 {
		t.Fatalf("%d live keys after expiry: %q", n, keysWithPrefix(t, s, nil))
	}
	// They still take space until compaction drops them; then nothing is
	// stored at all, not even a deletion marker.
	if n := allKeys(t, s); n == 0 {
		t.Fatal("no stored keys before compaction: the check below proves nothing")
	}
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	if n := allKeys(t, s); n != 0 {
		t.Fatalf("%d keys still stored after compaction", n)
	}
	// The outbox works on after a compaction.
	ingest(t, s, oneIngest("after", t0, "ok"))
	wantPending(t, s, map[string]int{"ok": 1})
}

// TestDiskFootprintAfterRetention writes 200,000 delivered events with a
// 2 s retention and checks that once they expire and are compacted away
// the outbox takes no more than twice the space of an empty one. The
// value-log file being written is collected only once it is full or
// after a restart, so the test restarts the store before the last
// compaction; it logs the footprint before that too.
func TestDiskFootprintAfterRetention(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200,000 events")
	}
	events := 200_000
	if raceEnabled {
		// The same check at a tenth of the size: under the race detector
		// the full one takes minutes and starves timing tests running
		// beside it.
		events = 20_000
	}
	emptyDir := t.TempDir()
	e := openStore(t, Options{Dir: emptyDir})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	empty, emptyApparent := footprint(t, emptyDir)

	dir := t.TempDir()
	opts := Options{Dir: dir, Retention: 2 * time.Second, DeadRetention: 2 * time.Second, DedupeWindow: 2 * time.Second}
	s := openStore(t, opts)
	start := time.Now()
	const batchSize = 500
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	sem := make(chan struct{}, 8)
	for i := 0; i < events; i += batchSize {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			var batch []Ingest
			for j := i; j < i+batchSize; j++ {
				id := "ev" + strconv.Itoa(j)
				batch = append(batch, Ingest{
					Event:      &Event{ID: id, Type: "bench", Time: t0, Received: t0, Data: payload1K},
					Deliveries: []*Delivery{newDelivery(id+"/r", id, "r", t0)},
					Dedupe:     id,
				})
			}
			if _, err := s.Ingest(t.Context(), batch); err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			var rec sync.WaitGroup
			for _, in := range batch {
				d := *in.Deliveries[0]
				d.Status, d.Attempts, d.Done = StatusDelivered, 1, t0
				rec.Add(1)
				s.Record(Outcome{Delivery: &d, ClaimedDue: t0,
					Attempt: &Attempt{N: 1, Start: t0, Duration: time.Millisecond, Status: 200, Response: []byte(`{"ok":true}`)}},
					func(err error) {
						if err != nil {
							select {
							case errs <- err:
							default:
							}
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
		t.Fatal(err)
	default:
	}
	last := time.Now()
	full, fullApparent := footprint(t, dir)
	t.Logf("%d delivered events written in %v: %d MiB on disk (%d MiB apparent)",
		events, last.Sub(start).Round(time.Millisecond), full>>20, fullApparent>>20)

	waitExpired(last, opts.Retention)
	// Expired events are deleted by the sweeper, which runs every
	// second: run it now rather than wait for it.
	if err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	if n := liveKeys(t, s); n != 0 {
		t.Fatalf("%d live keys after expiry", n)
	}
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	if n := allKeys(t, s); n != 0 {
		t.Errorf("%d keys still stored after compaction", n)
	}
	running, _ := footprint(t, dir)
	t.Logf("expired and compacted while open: %d MiB on disk (the value-log file being written)", running>>20)

	// Badger never collects the value-log file it is writing to: it goes
	// when it fills up (ValueLogFileSize) or at a restart, which starts a
	// new one.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, opts)
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	if n := allKeys(t, s); n != 0 {
		t.Errorf("%d keys still stored after compaction", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	after, afterApparent := footprint(t, dir)
	t.Logf("empty store: %d KiB on disk (%d KiB apparent); after expiry, restart and compaction: %d KiB (%d KiB apparent); %v in all",
		empty>>10, emptyApparent>>10, after>>10, afterApparent>>10, time.Since(start).Round(time.Millisecond))
	if after > 2*empty {
		entries, _ := os.ReadDir(dir)
		for _, en := range entries {
			fi, _ := en.Info()
			t.Logf("  %s %d", en.Name(), fi.Size())
		}
		t.Fatalf("outbox takes %d bytes after its %d events expired, more than twice an empty one (%d)", after, events, empty)
	}
}
