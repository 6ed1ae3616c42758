package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// syncGate holds every sync round at its start while closed, so a test
// can see what waits for a sync and what does not.
type syncGate struct {
	mu     sync.Mutex
	open   chan struct{}
	once   sync.Once
	rounds int
}

func newSyncGate() *syncGate {
	return &syncGate{open: make(chan struct{})}
}

func (g *syncGate) before() {
	g.mu.Lock()
	g.rounds++
	open := g.open
	g.mu.Unlock()
	<-open
}

func (g *syncGate) release() { g.once.Do(func() { close(g.open) }) }

func TestIngestWaitsForSyncOutcomesDoNot(t *testing.T) {
	g := newSyncGate()
	s := openStore(t, Options{beforeJournalSync: g.before, beforeSync: g.before})
	defer g.release()

	// An ingest made while syncs are held does not return.
	done := make(chan error, 1)
	go func() {
		_, err := s.Ingest(context.Background(), []Ingest{oneIngest("e1", t0, "r")})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Ingest returned (%v) before its sync ran", err)
	case <-time.After(300 * time.Millisecond):
	}
	// The event is committed, though: reads see it, and an outcome for
	// its delivery is recorded without waiting for a sync.
	if _, err := s.Event("e1"); err != nil {
		t.Fatalf("Event before the sync: %v", err)
	}
	d, err := s.Delivery("e1/r")
	if err != nil {
		t.Fatalf("Delivery before the sync: %v", err)
	}
	rec := make(chan error, 1)
	claimed := d.Due
	d.Status, d.Attempts, d.Done = StatusDelivered, 1, t0
	s.Record(Outcome{Delivery: d, ClaimedDue: claimed, Attempt: &Attempt{N: 1, Start: t0, Status: 200}}, func(err error) { rec <- err })
	select {
	case err := <-rec:
		if err != nil {
			t.Fatalf("Record: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Record waited for a sync")
	}
	// A duplicate of the held ingest is answered only after a sync too
	// (of Badger's logs: the original's journal write may have failed):
	// "duplicate" tells the client its event is stored.
	dup := make(chan error, 1)
	go func() {
		_, err := s.Ingest(context.Background(), []Ingest{oneIngest("e1", t0, "r")})
		dup <- err
	}()
	select {
	case err := <-dup:
		t.Fatalf("duplicate Ingest returned (%v) before a sync ran", err)
	case <-time.After(300 * time.Millisecond):
	}

	g.release()
	for _, c := range []chan error{done, dup} {
		select {
		case err := <-c:
			if err != nil {
				t.Fatalf("Ingest after the sync: %v", err)
			}
		case <-time.After(wait):
			t.Fatal("Ingest did not return after the sync")
		}
	}
}

// TestSyncFollowsRetiredLogFiles writes enough to make Badger move to new
// write-ahead-log and value-log files, and checks that each retired file
// is synced by the next round (and that the store follows Badger's file
// names: if they changed, nothing would be seen retiring).
func TestSyncFollowsRetiredLogFiles(t *testing.T) {
	var mu sync.Mutex
	synced := map[string]int{}
	orig := syncFile
	syncFile = func(path string) error {
		mu.Lock()
		synced[filepath.Base(path)]++
		mu.Unlock()
		return orig(path)
	}
	defer func() { syncFile = orig }()

	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir, memTableSize: 256 << 10, vlogFileSize: 1 << 20})
	startMem, startVlog := s.sync.logs.mem, s.sync.logs.vlog
	payload := `"` + strings.Repeat("x", 4000) + `"`
	for i := 0; i < 1200; i++ {
		in := oneIngest(fmt.Sprintf("ev%04d", i), t0, "r")
		in.Event.Data = []byte(payload)
		ingest(t, s, in)
	}
	// Ingests wait for the journal; Badger's logs are synced by the
	// syncer's rounds, about once a second or when asked.
	if err := s.durable(); err != nil {
		t.Fatal(err)
	}
	s.sync.logsMu.Lock()
	mem, vlog := s.sync.logs.mem, s.sync.logs.vlog
	memF, vlogF := s.sync.logs.memF, s.sync.logs.vlogF
	s.sync.logsMu.Unlock()
	// The rounds sync the newest files through handles kept open.
	for _, c := range []struct {
		f    *os.File
		want string
	}{{memF, fmt.Sprintf("%05d.mem", mem)}, {vlogF, fmt.Sprintf("%06d.vlog", vlog)}} {
		if c.f == nil || filepath.Base(c.f.Name()) != c.want {
			name := "none"
			if c.f != nil {
				name = c.f.Name()
			}
			t.Errorf("current file synced through %s, want %s", name, c.want)
		}
	}
	if vlog < startVlog+2 {
		t.Errorf("value log followed from file %d to %d after ~5 MB with 1 MiB files", startVlog, vlog)
	}
	if mem < startMem+1 {
		t.Errorf("write-ahead log followed from file %d to %d after ~1,200 transactions with 256 KiB memtables", startMem, mem)
	}
	mu.Lock()
	defer mu.Unlock()
	for n := startVlog; n < vlog; n++ {
		name := fmt.Sprintf("%06d.vlog", n)
		if synced[name] != 1 {
			t.Errorf("retired %s synced %d times, want once", name, synced[name])
		}
	}
	// The current files are not retired yet: DB.Sync syncs them.
	if c := synced[fmt.Sprintf("%06d.vlog", vlog)]; c != 0 {
		t.Errorf("current value-log file synced as retired %d times", c)
	}
	for n := startMem; n < mem; n++ {
		name := fmt.Sprintf("%05d.mem", n)
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil && synced[name] != 1 {
			t.Errorf("retired %s (still on disk) synced %d times, want once", name, synced[name])
		}
	}
}

// TestValueLogGCDeletesOnlyAfterSync checks that a value-log file GC
// rewrote is still on disk while the rewrite is being synced.
func TestValueLogGCDeletesOnlyAfterSync(t *testing.T) {
	dir := t.TempDir()
	var (
		mu      sync.Mutex
		watch   bool
		present []string
	)
	vlogs := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
		for i := range m {
			m[i] = filepath.Base(m[i])
		}
		return m
	}
	s := openStore(t, Options{Dir: dir, vlogFileSize: 1 << 20, beforeSync: func() {
		mu.Lock()
		defer mu.Unlock()
		if watch {
			present = vlogs()
		}
	}})
	// Fill a few files, then delete most of it: GC has files to rewrite.
	val := make([]byte, 8<<10)
	for i := 0; i < 400; i++ {
		key := []byte(fmt.Sprintf("zz-test-%04d", i))
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(key, val) }); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 400; i++ {
		if i%10 == 0 {
			continue
		}
		key := []byte(fmt.Sprintf("zz-test-%04d", i))
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(key) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.flattenAll(); err != nil {
		t.Fatal(err)
	}
	before := vlogs()
	mu.Lock()
	watch = true
	mu.Unlock()
	err := s.runValueLogGC(0.1)
	mu.Lock()
	watch = false
	during := present
	mu.Unlock()
	after := vlogs()
	if err != nil {
		t.Fatalf("value-log GC rewrote nothing (%v); files %v", err, before)
	}
	var gone []string
	for _, f := range before {
		if !contains(after, f) {
			gone = append(gone, f)
		}
	}
	if len(gone) == 0 {
		t.Fatalf("GC deleted no file: before %v, after %v", before, after)
	}
	for _, f := range gone {
		if !contains(during, f) {
			t.Errorf("%s was deleted before the rewrite was synced (files at the sync: %v)", f, during)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// observed records what Options.Observe is told.
type observed struct {
	mu           sync.Mutex
	rounds       []time.Duration
	commit, sync []time.Duration
}

func (o *observed) SyncRound(d time.Duration) {
	o.mu.Lock()
	o.rounds = append(o.rounds, d)
	o.mu.Unlock()
}

func (o *observed) IngestWait(commit, sync time.Duration) {
	o.mu.Lock()
	o.commit = append(o.commit, commit)
	o.sync = append(o.sync, sync)
	o.mu.Unlock()
}

// The observer is told of every successful ingest's two waits and of
// sync rounds, and a round that takes long shows in both the round's
// duration and the ingest's sync wait.
func TestObserverTimesSyncRounds(t *testing.T) {
	const hold = 50 * time.Millisecond
	var slow atomic.Bool
	obs := &observed{}
	s := openStore(t, Options{Observe: obs, beforeJournalSync: func() {
		if slow.Load() {
			time.Sleep(hold)
		}
	}})
	ingest(t, s, oneIngest("fast", t0, "r"))
	slow.Store(true)
	ingest(t, s, oneIngest("slow", t0, "r"))
	slow.Store(false)
	// An Ingest that fails in the committer is not timed, though its
	// group was committed: one too large for a transaction (see
	// TestTooLarge).
	big := Ingest{Event: newEvent("big", "{}")}
	for i := 0; i < 30000; i++ {
		big.Deliveries = append(big.Deliveries, newDelivery(fmt.Sprintf("big/%05d", i), "big", "r", t0))
	}
	if _, err := s.Ingest(context.Background(), []Ingest{big}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Ingest of 30000 deliveries: err = %v, want ErrTooLarge", err)
	}

	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.commit) != 2 || len(obs.sync) != 2 {
		t.Fatalf("IngestWait called %d times, want 2 (one per committed Ingest call)", len(obs.commit))
	}
	for i := range obs.commit {
		if obs.commit[i] < 0 || obs.sync[i] < 0 {
			t.Errorf("ingest %d: negative wait: commit %v, sync %v", i, obs.commit[i], obs.sync[i])
		}
	}
	if obs.sync[1] < hold {
		t.Errorf("the ingest whose round was held %v waited %v for it", hold, obs.sync[1])
	}
	if len(obs.rounds) < 2 {
		t.Fatalf("%d sync rounds observed, want at least 2", len(obs.rounds))
	}
	longest := slices.Max(obs.rounds)
	if longest < hold {
		t.Errorf("longest round observed %v, want at least the %v it was held", longest, hold)
	}
}
