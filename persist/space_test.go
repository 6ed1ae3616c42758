package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeProbe reports the free and used space a test sets.
type fakeProbe struct{ freeB, usedB atomic.Int64 }

func (p *fakeProbe) free(string) (int64, error) { return p.freeB.Load(), nil }
func (p *fakeProbe) used(string) (int64, error) { return p.usedB.Load(), nil }

// spaceLog collects the states OnSpace reports.
type spaceLog struct {
	mu     sync.Mutex
	states []Space
}

func (l *spaceLog) add(sp Space) {
	l.mu.Lock()
	l.states = append(l.states, sp)
	l.mu.Unlock()
}

func (l *spaceLog) last(t *testing.T) Space {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.states) == 0 {
		t.Fatal("OnSpace never called")
	}
	return l.states[len(l.states)-1]
}

func tryIngest(s *Badger, batch ...Ingest) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := s.Ingest(ctx, batch)
	return err
}

const mib = 1 << 20

// The clock is frozen (t0), so the guard measures at every look: a change
// of the fake probe applies at the next commit group.
func TestStorageFullRefusesIngestKeepsOutcomes(t *testing.T) {
	p := new(fakeProbe)
	p.freeB.Store(1 << 30)
	var log spaceLog
	s := openStore(t, Options{Now: func() time.Time { return t0 }, MinFree: 100 * mib, OnSpace: log.add, probe: p})
	ingest(t, s, oneIngest("e1", t0, "r"), oneIngest("e2", t0, "r"))

	// Between the hard reserve (50 MiB) and MinFree: ingest is refused,
	// a batch as a whole, and outcomes are still recorded.
	p.freeB.Store(60 * mib)
	in3, in4 := oneIngest("e3", t0, "r"), oneIngest("e4", t0, "r")
	in3.Dedupe, in4.Dedupe = "e3", "e4"
	err := tryIngest(s, in3, in4)
	if !errors.Is(err, ErrStorageFull) {
		t.Fatalf("Ingest at 60 MiB free: err = %v, want ErrStorageFull", err)
	}
	for _, want := range []string{"60 MiB free", "min_free is 100 MiB", s.opts.Dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	for _, id := range []string{"e3", "e4"} {
		if _, err := s.Event(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Event(%s) after a refused ingest: err = %v, want ErrNotFound", id, err)
		}
	}
	if sp := s.Space(); !sp.Full || sp.Critical {
		t.Errorf("Space() = %+v, want Full and not Critical", sp)
	}
	if sp := log.last(t); !sp.Full {
		t.Errorf("OnSpace last reported %+v, want Full", sp)
	}
	d := mustDelivery(t, s, "e1/r")
	d.Status, d.Attempts, d.Done = StatusDelivered, 1, t0
	record(t, s, Outcome{Delivery: d, ClaimedDue: t0, Attempt: &Attempt{N: 1, Start: t0, Status: 200}})
	if got := mustDelivery(t, s, "e1/r").Status; got != StatusDelivered {
		t.Errorf("e1/r is %v after its outcome, want delivered", got)
	}

	// Below the hard reserve, outcomes are refused too.
	p.freeB.Store(40 * mib)
	d = mustDelivery(t, s, "e2/r")
	d.Status, d.Attempts, d.Done = StatusDelivered, 1, t0
	if err := recordErr(t, s, Outcome{Delivery: d, ClaimedDue: t0, Attempt: &Attempt{N: 1, Start: t0, Status: 200}}); !errors.Is(err, ErrStorageFull) {
		t.Fatalf("Record at 40 MiB free: err = %v, want ErrStorageFull", err)
	}
	if got := mustDelivery(t, s, "e2/r").Status; got != StatusPending {
		t.Errorf("e2/r is %v after a refused outcome, want pending", got)
	}
	if sp := s.Space(); !sp.Critical {
		t.Errorf("Space() = %+v, want Critical", sp)
	}

	// Just above MinFree is not enough to resume (no flapping at the
	// threshold); a margin above it is.
	p.freeB.Store(101 * mib)
	if err := tryIngest(s, in3, in4); !errors.Is(err, ErrStorageFull) {
		t.Fatalf("Ingest at 101 MiB free, having been full: err = %v, want ErrStorageFull", err)
	}
	p.freeB.Store(200 * mib)
	res := ingest(t, s, in3, in4)
	if res[0].Duplicate || res[1].Duplicate {
		t.Errorf("ingest after space returned: %+v, want both new (the refused one stored nothing)", res)
	}
	mustEvent(t, s, "e4")
	if sp := log.last(t); sp.Full || sp.Critical {
		t.Errorf("OnSpace last reported %+v, want neither Full nor Critical", sp)
	}
}

func TestStorageFullMaxStorage(t *testing.T) {
	p := new(fakeProbe)
	p.freeB.Store(1 << 40)
	p.usedB.Store(999 * mib)
	s := openStore(t, Options{Now: func() time.Time { return t0 }, MinFree: 100 * mib, MaxStorage: 1000 * mib, probe: p})
	big := oneIngest("big", t0, "r")
	big.Event.Data = []byte(`"` + strings.Repeat("x", 2*mib) + `"`)
	err := tryIngest(s, big)
	if !errors.Is(err, ErrStorageFull) || !strings.Contains(err.Error(), "max_storage is 1000 MiB") {
		t.Fatalf("Ingest of 2 MiB with 1 MiB left under max_storage: err = %v, want ErrStorageFull naming max_storage", err)
	}
	// Outcomes are not held back by max_storage, only by free space.
	ingestNoGuard := oneIngest("small", t0, "r")
	p.usedB.Store(10 * mib)
	ingest(t, s, ingestNoGuard)
	p.usedB.Store(2000 * mib)
	d := mustDelivery(t, s, "small/r")
	d.Status, d.Attempts, d.Done = StatusDead, 1, t0
	record(t, s, Outcome{Delivery: d, ClaimedDue: t0, Attempt: &Attempt{N: 1, Start: t0, Status: 400}})

	// A reload that removes the cap lets ingest in again.
	s.SetSpaceLimits(100*mib, 0)
	ingest(t, s, big)
}

func TestOpenRefusesFullDisk(t *testing.T) {
	p := new(fakeProbe)
	p.freeB.Store(10 * mib)
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, MinFree: 100 * mib, probe: p})
	if err == nil {
		s.Close()
		t.Fatal("Open with 10 MiB free and min_free 100 MiB succeeded")
	}
	for _, want := range []string{dir, "10 MiB free", "min_free, which is 100 MiB"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("Open refused but left %d files in %s: Badger was opened", len(entries), dir)
	}
	// Above the hard reserve it opens, refusing ingest only.
	p.freeB.Store(60 * mib)
	s = openStore(t, Options{Dir: dir, MinFree: 100 * mib, probe: p})
	if sp := s.Space(); !sp.Full || sp.Critical {
		t.Errorf("Space() at 60 MiB free = %+v, want Full, not Critical", sp)
	}
}

// Each state of the guard ends only past a margin beyond where it began:
// the hard reserve too, so that a look with nothing about to be written
// (the dispatcher's) agrees with the committer's refusal of an outcome
// right at the reserve; max_storage too, so ingest does not flap there.
func TestSpaceGuardHysteresis(t *testing.T) {
	p := new(fakeProbe)
	g := newSpaceGuard(t.TempDir(), 100*mib, 0, p, func() time.Time { return time.Time{} }, nil)
	margin := resumeMargin(100 * mib)

	p.freeB.Store(50 * mib) // exactly the reserve
	if _, outErr := g.admit(0, 512); outErr == nil {
		t.Fatal("an outcome that would go below the reserve was admitted")
	}
	for _, free := range []int64{50 * mib, 50*mib + margin - 1} {
		p.freeB.Store(free)
		if sp := g.space(); !sp.Critical {
			t.Errorf("free %d (reserve 50 MiB, margin %d): not critical once outcomes were refused", free, margin)
		}
	}
	p.freeB.Store(50*mib + margin)
	if sp := g.space(); sp.Critical {
		t.Errorf("free at reserve+margin: still critical")
	}

	q := new(fakeProbe)
	q.freeB.Store(1 << 40)
	h := newSpaceGuard(t.TempDir(), 100*mib, 100*mib, q, func() time.Time { return time.Time{} }, nil)
	q.usedB.Store(100*mib - 100)
	if inErr, _ := h.admit(1000, 0); inErr == nil {
		t.Fatal("ingest over max_storage admitted")
	}
	q.usedB.Store(100*mib - 100) // nothing was written; a little was freed
	if inErr, _ := h.admit(10, 0); inErr == nil {
		t.Error("ingest admitted right under max_storage after a refusal: it would flap")
	}
	q.usedB.Store(100*mib - resumeMargin(100*mib) - 1000)
	if inErr, _ := h.admit(10, 0); inErr != nil {
		t.Errorf("ingest refused with max_storage's margin free: %v", inErr)
	}
}

// duProbe is a file system of capacity bytes holding only dir: its free
// space is what the outbox's files leave, so space Badger gives back
// shows.
type duProbe struct {
	t        testing.TB
	dir      string
	capacity int64
}

func (p duProbe) free(string) (int64, error) {
	used, _ := footprint(p.t, p.dir)
	return p.capacity - used, nil
}

func (p duProbe) used(string) (int64, error) {
	used, _ := footprint(p.t, p.dir)
	return used, nil
}

// Refused for space, with every delivery done and its retention over,
// ingest resumes by itself: nothing is written meanwhile, so no
// compaction would tell the value log what is garbage; the GC loop
// compacts when it finds nothing to reclaim while ingest is refused.
func TestStorageFullResumesAfterRetention(t *testing.T) {
	dir := t.TempDir()
	// Enough that a memtable flush (16 MiB) fits beside the reserve.
	const minFree = 40 * mib
	opts := Options{Dir: dir, MinFree: minFree, Retention: time.Second, DeadRetention: time.Second,
		DedupeWindow: time.Second, GCInterval: 200 * time.Millisecond, vlogFileSize: 1 * mib}
	// Opened once to learn what an empty outbox takes.
	s0 := openStore(t, opts)
	s0.Close()
	empty, _ := footprint(t, dir)
	opts.probe = duProbe{t: t, dir: dir, capacity: empty + minFree + 6*mib}
	s := openStore(t, opts)

	pad := strings.Repeat("x", 8<<10)
	var ids []string
	for n := 0; ; n++ {
		if n == 5000 {
			t.Fatal("ingest never refused for space")
		}
		in := oneIngest(fmt.Sprintf("e%d", n), t0, "r")
		in.Event.Data = []byte(`{"pad":"` + pad + `"}`)
		err := tryIngest(s, in)
		if errors.Is(err, ErrStorageFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, in.Event.ID)
	}
	for _, id := range ids {
		finish(t, s, id+"/r", StatusDelivered, t0)
	}
	t.Logf("%d events stored before ingest was refused; all delivered", len(ids))
	waitExpired(time.Now(), opts.Retention)

	deadline := time.Now().Add(wait)
	for n := 0; ; n++ {
		err := tryIngest(s, oneIngest(fmt.Sprintf("after-%d", n), t0, "r"))
		if err == nil {
			break
		}
		if !errors.Is(err, ErrStorageFull) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			used, _ := footprint(t, dir)
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				fi, _ := e.Info()
				u, _ := footprint(t, dir+"/"+e.Name())
				t.Logf("%s %d (%d used)", e.Name(), fi.Size(), u)
			}
			t.Fatalf("ingest still refused %v after retention ended (outbox takes %d bytes, empty %d): %v", wait, used, empty, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Badger's tables raise the hard reserve (a compaction may write them
// again) and, with it, the free space ingest keeps: a large outbox on a
// small min_free would otherwise run its disk dry in a compaction, and
// the process die of SIGBUS.
func TestSpaceReserveCoversTables(t *testing.T) {
	dir := t.TempDir()
	sst := filepath.Join(dir, "000001.sst")
	if err := os.WriteFile(sst, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sst, 100*mib); err != nil { // sparse: its size is what counts
		t.Fatal(err)
	}
	p := new(fakeProbe)
	p.freeB.Store(150 * mib)
	g := newSpaceGuard(dir, 20*mib, 0, p, func() time.Time { return time.Time{} }, nil)
	if err := g.checkOpen(); err != nil {
		t.Fatalf("150 MiB free, 100 MiB of tables: %v", err)
	}
	p.freeB.Store(105 * mib) // over min_free and its half, under tables + half of min_free
	if inErr, outErr := g.admit(1, 1); inErr == nil || outErr != nil || !strings.Contains(inErr.Error(), "tables") {
		t.Errorf("105 MiB free: ingest %v, outcome %v; want ingest refused naming the tables, outcomes taken", inErr, outErr)
	}
	if sp := g.space(); sp.Reserve != 100*mib || sp.Need != 110*mib {
		t.Errorf("reserve %d, need %d; want the tables' 100 MiB and that plus half of min_free", sp.Reserve, sp.Need)
	}
	p.freeB.Store(90 * mib)
	if _, outErr := g.admit(0, 1); outErr == nil {
		t.Error("90 MiB free with 100 MiB of tables: an outcome was taken")
	}
	if err := g.checkOpen(); err == nil || !strings.Contains(err.Error(), "tables") {
		t.Errorf("open with 90 MiB free and 100 MiB of tables: %v, want a refusal naming the tables", err)
	}
}
