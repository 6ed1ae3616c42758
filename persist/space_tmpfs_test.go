//go:build linux

package persist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/tmpfs"
)

// fill writes a file on dir's file system until it is full (a plain
// write gets ENOSPC, it does not crash).
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("filling %s: %v", path, err)
		}
	}
}

// TestStorageFullOnTmpfs fills a real 64 MiB tmpfs through Ingest. Before
// the guard, Badger's memory-mapped value log ran into the end of the file
// system and SIGBUS killed the process (this test binary). Now ingest is
// refused with ErrStorageFull while outcomes are still recorded, every
// acknowledged event is readable, and an Open on a full disk fails with a
// message instead of a crash.
func TestStorageFullOnTmpfs(t *testing.T) {
	mnt := tmpfs.Mount(t, 64*mib)
	dir := filepath.Join(mnt, "outbox")
	opts := Options{Dir: dir, MinFree: 16 * mib}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	data := `{"pad":"` + strings.Repeat("x", 1000) + `"}`
	start := time.Now()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := 0; n < 100_000; n++ {
				var batch []Ingest
				for i := 0; i < 10; i++ {
					id := fmt.Sprintf("w%d-%d-%d", w, n, i)
					in := oneIngest(id, t0, "r")
					in.Event.Data = []byte(data)
					batch = append(batch, in)
				}
				err := tryIngest(s, batch...)
				if errors.Is(err, ErrStorageFull) {
					return
				}
				if err != nil {
					t.Errorf("Ingest: %v", err)
					return
				}
				mu.Lock()
				for _, in := range batch {
					acked = append(acked, in.Event.ID)
				}
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	sp := s.Space()
	t.Logf("%d events acknowledged in %v before storage_full; free %d KiB", len(acked), time.Since(start).Round(time.Millisecond), sp.Free>>10)
	if len(acked) < 1000 {
		t.Fatalf("only %d events acknowledged on a 64 MiB tmpfs with min_free 16 MiB", len(acked))
	}
	if !sp.Full {
		t.Errorf("Space() = %+v after ErrStorageFull, want Full", sp)
	}
	// Outcomes are still recorded (above the hard reserve of 8 MiB).
	for _, id := range acked[:200] {
		d := mustDelivery(t, s, id+"/r")
		d.Status, d.Attempts, d.Done = StatusDelivered, 1, t0
		record(t, s, Outcome{Delivery: d, ClaimedDue: t0, Attempt: &Attempt{N: 1, Start: t0, Status: 200}})
	}
	for _, id := range acked {
		if _, err := s.Event(id); err != nil {
			t.Fatalf("acknowledged event %s: %v", id, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Reopening on the nearly full disk works (above the hard reserve),
	// and ingest is refused again before the disk fills. How many events
	// still fit depends on what Badger gives back as it opens (it flushes
	// the replayed memtable and deletes its write-ahead log), so the bound
	// is what the whole 64 MiB file system could hold.
	s2, err := Open(opts)
	if err != nil {
		t.Fatalf("reopening with %d KiB free: %v", sp.Free>>10, err)
	}
	refused := false
	limit := 64 * mib / len(data)
	n := 0
	for ; n < limit && !refused; n++ {
		in := oneIngest(fmt.Sprintf("after-reopen-%d", n), t0, "r")
		in.Event.Data = []byte(data)
		err := tryIngest(s2, in)
		refused = errors.Is(err, ErrStorageFull)
		if err != nil && !refused {
			t.Fatalf("Ingest after reopening: %v", err)
		}
	}
	t.Logf("after reopening: refused after %d events", n)
	if !refused {
		t.Errorf("%d more events (64 MiB of them) accepted after reopening with %d KiB free, min_free 16 MiB", n, sp.Free>>10)
	}
	s2.Close()

	// Full to the last block: Open refuses with a message, no SIGBUS.
	filler := filepath.Join(mnt, "filler")
	fill(t, filler)
	if s3, err := Open(opts); err == nil {
		s3.Close()
		t.Fatal("Open on a full tmpfs succeeded")
	} else if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "min_free") {
		t.Errorf("Open on a full tmpfs: %v; want the directory and min_free named", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s4, err := Open(opts)
	if err != nil {
		t.Fatalf("Open once the filler is gone: %v", err)
	}
	defer s4.Close()
	for _, id := range acked {
		if _, err := s4.Event(id); err != nil {
			t.Fatalf("acknowledged event %s after reopening: %v", id, err)
		}
	}
}
