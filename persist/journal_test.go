package persist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// An ingest is answered once its journal record is on disk, without
// waiting for a sync of Badger's logs: that is the point of the journal.
func TestIngestDoesNotWaitForLogSync(t *testing.T) {
	g := newSyncGate()
	s := openStore(t, Options{beforeSync: g.before})
	defer g.release()
	done := make(chan error, 1)
	go func() {
		_, err := s.Ingest(context.Background(), []Ingest{oneIngest("e1", t0, "r")})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Ingest waited for a sync of Badger's logs")
	}
	segs, err := journalSegments(s.opts.Dir)
	if err != nil || len(segs) == 0 {
		t.Fatalf("no journal segment beside the outbox (%v)", err)
	}
}

// journalCases is a spread of ingests: several deliveries, one, none
// (kept), an idempotency key, a large payload.
func journalCases(prefix string) []Ingest {
	multi := oneIngest(prefix+"multi", t0, "a", "b", "c")
	sole := oneIngest(prefix+"sole", t0.Add(time.Minute), "a")
	kept := Ingest{Event: newEvent(prefix+"kept", `{"kept":true}`), Keep: true}
	keyed := oneIngest(prefix+"keyed", t0, "b")
	keyed.Dedupe = prefix + "idem-1"
	big := oneIngest(prefix+"big", t0, "a")
	big.Event.Data = []byte(`"` + strings.Repeat("é", 40000) + `"`)
	return []Ingest{multi, sole, kept, keyed, big}
}

// copyDir copies the regular files of src into a new directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == "LOCK" {
			continue
		}
		// A running store may delete a file meanwhile (a checkpointed
		// journal segment, a compacted table): the copy is then as if
		// the crash came after.
		if _, err := os.Stat(filepath.Join(src, e.Name())); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
	}
	return dst
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// crashAfter opens a store in dir that keeps its journal as a crash
// before any checkpoint would, runs fn, closes it, and returns the
// journal segments it left.
func crashAfter(t *testing.T, dir string, fn func(s *Badger)) []string {
	t.Helper()
	s, err := Open(Options{Dir: dir, noCheckpoint: true})
	if err != nil {
		t.Fatal(err)
	}
	fn(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, journalPrefix+"*"+journalExt))
	if len(segs) == 0 {
		t.Fatal("the store left no journal segment")
	}
	return segs
}

// checkIngested checks that every case's event and deliveries are
// stored as ingested, pending.
func checkIngested(t *testing.T, s *Badger, cases []Ingest) {
	t.Helper()
	for _, in := range cases {
		ev, err := s.Event(in.Event.ID)
		if err != nil {
			t.Errorf("event %s: %v", in.Event.ID, err)
			continue
		}
		if !bytes.Equal(ev.Data, in.Event.Data) {
			t.Errorf("event %s: payload of %d bytes, want %d", in.Event.ID, len(ev.Data), len(in.Event.Data))
		}
		for _, want := range in.Deliveries {
			d, err := s.Delivery(want.ID)
			if err != nil {
				t.Errorf("delivery %s: %v", want.ID, err)
				continue
			}
			if d.Status != StatusPending || !d.Due.Equal(want.Due) || d.Route != want.Route {
				t.Errorf("delivery %s: %s due %v on %s, want pending due %v on %s", want.ID, d.Status, d.Due, d.Route, want.Due, want.Route)
			}
		}
	}
}

// dueOn lists the deliveries of route due by a day after t0.
func dueOn(t *testing.T, s *Badger, route string) []string {
	t.Helper()
	refs, _ := mustDue(t, s, route, t0.Add(24*time.Hour), 100, nil)
	var ids []string
	for _, r := range refs {
		ids = append(ids, r.ID)
	}
	return ids
}

// Badger's logs lose what was acknowledged after the last checkpoint
// (here: the files are put back as they were before those ingests); the
// journal brings every one of them back, ready to deliver, once.
func TestJournalReplaysWhatBadgerLost(t *testing.T) {
	dir := t.TempDir()
	before := journalCases("old-")
	s := openStore(t, Options{Dir: dir})
	ingest(t, s, before...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	snapshot := copyDir(t, dir)

	lost := journalCases("new-")
	segs := crashAfter(t, dir, func(s *Badger) {
		for _, in := range lost {
			ingest(t, s, in)
		}
	})
	// Badger's files as they were before the lost ingests, the journal as
	// the crash left it.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), journalPrefix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	entries, _ = os.ReadDir(snapshot)
	for _, e := range entries {
		copyFile(t, filepath.Join(snapshot, e.Name()), filepath.Join(dir, e.Name()))
	}

	s = openStore(t, Options{Dir: dir})
	checkIngested(t, s, append(before, journalCases("new-")...))
	for _, route := range []string{"a", "b", "c"} {
		ids := dueOn(t, s, route)
		seen := map[string]int{}
		for _, id := range ids {
			seen[id]++
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("route %s: delivery %s due %d times", route, id, n)
			}
		}
		for _, in := range lost {
			for _, d := range in.Deliveries {
				if d.Route == route && seen[d.ID] != 1 {
					t.Errorf("route %s: replayed delivery %s not due (due: %v)", route, d.ID, ids)
				}
			}
		}
	}
	// The idempotency key came back with its event.
	res := ingest(t, s, Ingest{Event: newEvent("other", "{}"), Dedupe: "new-idem-1"})
	if !res[0].Duplicate || res[0].ID != "new-keyed" {
		t.Errorf("ingest under a replayed idempotency key: %+v, want a duplicate of new-keyed", res[0])
	}
	// Replayed and synced: the segments are gone.
	for _, p := range segs {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s still there after the replay", filepath.Base(p))
		}
	}
}

// When Badger's logs kept everything, the replay writes nothing: an
// outcome recorded after the ingest stays as recorded.
func TestJournalReplaySkipsWhatBadgerKept(t *testing.T) {
	dir := t.TempDir()
	cases := journalCases("")
	crashAfter(t, dir, func(s *Badger) {
		ingest(t, s, cases...)
		d, err := s.Delivery("sole/a")
		if err != nil {
			t.Fatal(err)
		}
		claimed := d.Due
		d.Status, d.Attempts, d.Done = StatusDelivered, 1, t0
		record(t, s, Outcome{Delivery: d, ClaimedDue: claimed, Attempt: &Attempt{N: 1, Start: t0, Status: 200}})
	})
	s := openStore(t, Options{Dir: dir})
	d, err := s.Delivery("sole/a")
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != StatusDelivered {
		t.Errorf("delivered sole/a is %s after the replay, want delivered", d.Status)
	}
	for _, id := range dueOn(t, s, "a") {
		if id == "sole/a" {
			t.Error("delivered sole/a is due again after the replay")
		}
	}
	checkIngested(t, s, cases[:1])
}

// A write the crash cut short is not replayed, and what came before it
// is.
func TestJournalIgnoresTornTail(t *testing.T) {
	dir := t.TempDir()
	cases := journalCases("")
	whole := appendJournalIngest(nil, &cases[0], nil, t0)
	torn := appendJournalIngest(nil, &cases[1], nil, t0)
	torn = torn[:len(torn)-3]
	bad := appendJournalIngest(nil, &cases[2], nil, t0)
	bad[len(bad)-1] ^= 0xff // CRC mismatch
	for i, data := range [][]byte{whole, append(bytes.Clone(whole[:0:0]), torn...), bad} {
		if err := os.WriteFile(filepath.Join(dir, journalName(uint64(i+1))), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := openStore(t, Options{Dir: dir})
	checkIngested(t, s, cases[:1])
	for _, id := range []string{cases[1].Event.ID, cases[2].Event.ID} {
		if _, err := s.Event(id); err == nil {
			t.Errorf("event %s of a damaged record was replayed", id)
		}
	}
	segs, _ := journalSegments(dir)
	if len(segs) != 1 || segs[0] != 4 {
		t.Errorf("segments after the replay: %v, want only the new 4", segs)
	}
}

// Checkpoints retire segments while the store runs, and a sweep deletes
// no event its journal still holds.
func TestJournalCheckpointRetiresSegments(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir})
	for i := range 5 {
		ingest(t, s, oneIngest(fmt.Sprintf("e%d", i), t0, "a"))
		if err := s.durable(); err != nil {
			t.Fatal(err)
		}
	}
	segs, err := journalSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 {
		t.Errorf("segments after checkpoints: %v, want only the current one", segs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if segs, _ := journalSegments(dir); len(segs) != 0 {
		t.Errorf("segments after Close: %v, want none", segs)
	}
}

// An id used twice within a checkpoint (its first event gone meanwhile,
// under a short retention) comes back as its last use.
func TestJournalReplaysLastUseOfAnID(t *testing.T) {
	dir := t.TempDir()
	first := oneIngest("x", t0, "a")
	first.Event.Data = []byte(`"first"`)
	second := oneIngest("x", t0.Add(time.Hour), "b")
	second.Event.Data = []byte(`"second"`)
	data := appendJournalIngest(nil, &first, nil, t0)
	data = appendJournalIngest(data, &second, nil, t0)
	if err := os.WriteFile(filepath.Join(dir, journalName(7)), data, 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, Options{Dir: dir})
	checkIngested(t, s, []Ingest{second})
	if got := dueOn(t, s, "a"); len(got) != 0 {
		t.Errorf("the first use's delivery came back: %v", got)
	}
}

// failCheckpoints takes the name of the journal's next segment, so that
// every rotation, and so every checkpoint, of the store in dir fails.
func failCheckpoints(t *testing.T, dir string) {
	t.Helper()
	segs, _ := journalSegments(dir)
	if err := os.Mkdir(filepath.Join(dir, journalName(segs[len(segs)-1]+1)), 0o700); err != nil {
		t.Fatal(err)
	}
}

// loseValueLogTail cuts the newest value-log file in dir back to its
// header (Badger's vlogHeaderSize), as a power failure before a
// checkpoint could, and returns the size it had.
func loseValueLogTail(t *testing.T, dir string) int64 {
	t.Helper()
	vlogs, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if len(vlogs) == 0 {
		t.Fatal("no value-log file")
	}
	newest := vlogs[len(vlogs)-1]
	fi, err := os.Stat(newest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(newest, 20); err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// afterLostTail stores an event "first" (route a) and checkpoints it by
// closing the store; then runs fn on a store that crashes before its next
// checkpoint, cuts the newest value-log file back as a power failure then
// could, and reopens the outbox: what the replay made of it. The int is
// the size the cut file had.
func afterLostTail(t *testing.T, fn func(s *Badger)) (*Badger, int64) {
	t.Helper()
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir})
	ingest(t, s, oneIngest("first", t0, "a"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	crashAfter(t, dir, fn)
	size := loseValueLogTail(t, dir)
	return openStore(t, Options{Dir: dir}), size
}

// deliverAll records a first, successful attempt for each delivery.
func deliverAll(t *testing.T, s *Badger, ids ...string) {
	t.Helper()
	var wg sync.WaitGroup
	for _, id := range ids {
		d := mustDelivery(t, s, id)
		claimed := d.Due
		d.Status, d.Attempts, d.Done = StatusDelivered, 1, t0
		wg.Add(1)
		s.Record(Outcome{Delivery: d, ClaimedDue: claimed, Attempt: &Attempt{N: 1, Start: t0, Status: 200}}, func(err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	barrier(t, s)
}

// A sweep deletes nothing while the journal cannot be checkpointed: the
// segment holding an expired event's ingest would bring it back, pending,
// after a crash.
func TestSweepNeedsJournalCheckpoint(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir, Retention: time.Second, sweepEvery: -1})
	failCheckpoints(t, dir)
	ingest(t, s, oneIngest("x", t0, "a"))
	deliverAll(t, s, "x/a")
	waitExpired(time.Now(), time.Second)
	if err := s.sweep(); err == nil {
		t.Error("sweep returned nil with the journal not checkpointed")
	}
	if err := s.view(func(txn *badger.Txn) error {
		_, err := txn.Get(eventKey("x"))
		return err
	}); err != nil {
		t.Errorf("x swept with the journal not checkpointed: %v", err)
	}
	crash := copyDir(t, dir) // what a kill -9 now leaves
	s2 := openStore(t, Options{Dir: crash, sweepEvery: -1})
	for _, id := range dueOn(t, s2, "a") {
		t.Errorf("%s is due again after the replay", id)
	}
}

// Every batch of a sweep checkpoints the journal first: an event whose
// ingest was journaled after an earlier batch's checkpoint (a short
// retention, a slow sync) is not swept from under its journal record.
func TestSweepCheckpointsEveryBatch(t *testing.T) {
	dir := t.TempDir()
	var (
		mu      sync.Mutex
		hold    chan struct{} // the first round held by the test waits for it
		entered chan struct{} // closed when that round has begun
		later   chan struct{} // rounds after it wait for it: a slow disk
	)
	before := func() {
		mu.Lock()
		h, e, l := hold, entered, later
		hold = nil
		mu.Unlock()
		switch {
		case h != nil:
			close(e)
			<-h
		case l != nil:
			<-l
		}
	}
	s := openStore(t, Options{Dir: dir, Retention: time.Second, sweepEvery: -1, beforeSync: before})
	var batch []Ingest
	var ids []string
	for i := 0; i < sweepBatch+1; i++ {
		in := oneIngest(fmt.Sprintf("e%d", i), t0, "a")
		batch = append(batch, in)
		ids = append(ids, in.Deliveries[0].ID)
	}
	ingest(t, s, batch...)
	deliverAll(t, s, ids...)
	waitExpired(time.Now(), time.Second)

	h, e, l := make(chan struct{}), make(chan struct{}), make(chan struct{})
	mu.Lock()
	hold, entered, later = h, e, l
	mu.Unlock()
	var once sync.Once
	slowDiskEnds := func() { once.Do(func() { close(l) }) }
	defer slowDiskEnds()
	swept := make(chan error, 1)
	go func() { swept <- s.sweep() }()
	<-e // the first batch's checkpoint is syncing
	ingest(t, s, oneIngest("y", t0, "a"))
	deliverAll(t, s, "y/a")
	waitExpired(time.Now(), time.Second)
	close(h)
	// The second batch (y among its events) waits for a checkpoint, so
	// for the slow disk; a sweep that did not would be done by now.
	select {
	case err := <-swept:
		t.Logf("sweep returned (%v) while sync rounds were held", err)
	case <-time.After(2 * time.Second):
		slowDiskEnds()
		if err := <-swept; err != nil {
			t.Fatal(err)
		}
	}
	crash := copyDir(t, dir) // what a kill -9 now leaves
	slowDiskEnds()
	s2 := openStore(t, Options{Dir: crash, sweepEvery: -1})
	for _, id := range dueOn(t, s2, "a") {
		t.Errorf("%s is due again after the replay", id)
	}
}

// Badger kept an event's key and its delivery's outcome but not its
// payload (its value log's tail was lost): the replay writes the payload
// again and leaves the outcome.
func TestJournalRewritesUnreadableEvent(t *testing.T) {
	s, size := afterLostTail(t, func(s *Badger) {
		in := oneIngest("lost", t0, "a")
		in.Event.Data = []byte(`"` + strings.Repeat("x", 2000) + `"`)
		ingest(t, s, in)
		deliverAll(t, s, "lost/a")
	})
	// The reopened store wrote to a value-log file of its own.
	if size < 2000 {
		t.Fatalf("the newest value-log file held %d bytes, not the second payload", size)
	}
	if ev, err := s.Event("lost"); err != nil || len(ev.Data) != 2002 {
		t.Errorf("event whose payload was lost, after the replay: %v", err)
	}
	if d := mustDelivery(t, s, "lost/a"); d.Status != StatusDelivered {
		t.Errorf("delivered lost/a is %s after the replay", d.Status)
	}
	wantIDs(t, "due on a", dueOn(t, s, "a"), "first/a")
}

// A duplicate is answered once Badger's logs are synced, not on the
// journal's next sync: its original's journal write may have failed (the
// original answered with the error), and a "duplicate" says the event is
// stored.
func TestDuplicateWaitsForLogSync(t *testing.T) {
	g := newSyncGate()
	s := openStore(t, Options{beforeSync: g.before})
	defer g.release()
	ingest(t, s, oneIngest("x", t0, "a"))
	dup := make(chan error, 1)
	go func() {
		_, err := s.Ingest(context.Background(), []Ingest{oneIngest("x", t0, "a")})
		dup <- err
	}()
	select {
	case err := <-dup:
		t.Fatalf("duplicate answered (%v) before Badger's logs were synced", err)
	case <-time.After(300 * time.Millisecond):
	}
	g.release()
	select {
	case err := <-dup:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("duplicate not answered after the sync")
	}
}

// An idempotency key used again after its window (both uses still in the
// journal) stays with the later use.
func TestJournalReplaysLastUseOfAKey(t *testing.T) {
	dir := t.TempDir()
	first := oneIngest("one", t0, "a")
	first.Dedupe = "k"
	second := oneIngest("two", t0, "a")
	second.Dedupe = "k"
	data := appendJournalIngest(nil, &first, nil, t0)
	data = appendJournalIngest(data, &second, nil, t0)
	if err := os.WriteFile(filepath.Join(dir, journalName(3)), data, 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, Options{Dir: dir})
	checkIngested(t, s, []Ingest{first, second})
	res := ingest(t, s, Ingest{Event: newEvent("three", "{}"), Dedupe: "k"})
	if !res[0].Duplicate || res[0].ID != "two" {
		t.Errorf("key k after the replay: %+v, want a duplicate of two", res[0])
	}
}

// A delivery whose record is large enough for the value log (>=
// valueThreshold; here a long event id) lost its payload with the
// event's: the replay writes both again.
func TestJournalRepairsUnreadableDelivery(t *testing.T) {
	id := "lost-" + strings.Repeat("x", 200)
	s, _ := afterLostTail(t, func(s *Badger) {
		in := oneIngest(id, t0, "a")
		in.Event.Data = []byte(`"` + strings.Repeat("x", 2000) + `"`)
		if n := len(encodeDelivery(in.Deliveries[0])); n < valueThreshold {
			t.Fatalf("delivery record %d bytes, want it in the value log", n)
		}
		ingest(t, s, in)
	})
	if ev, err := s.Event(id); err != nil || len(ev.Data) != 2002 {
		t.Fatalf("event after the replay: %v", err)
	}
	if _, err := s.Delivery(id + "/a"); err != nil {
		t.Errorf("delivery of the restored event after the replay: %v", err)
	}
}

// A kept event (Badger TTL, no sweeper entry) expires without any
// checkpoint; while checkpoints fail (the journal cannot rotate) its
// segment stays, and a crash must not bring the event back.
func TestJournalDoesNotBringBackExpiredKeptEvent(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir, Retention: time.Second, sweepEvery: -1})
	failCheckpoints(t, dir)
	start := time.Now()
	ingest(t, s, Ingest{Event: newEvent("kept", `{}`), Keep: true})
	if err := s.durable(); err != nil {
		t.Fatal(err)
	}
	waitExpired(start, time.Second)
	if _, err := s.Event("kept"); err == nil {
		t.Fatal("kept event not expired yet")
	}
	crash := copyDir(t, dir)
	s2 := openStore(t, Options{Dir: crash, Retention: time.Second, sweepEvery: -1})
	if ev, err := s2.Event("kept"); err == nil && ev != nil {
		t.Errorf("expired kept event is back after the replay")
	}
}

// An id used again (its first use expired, not swept), both uses in the
// journal: Badger kept the first use (whole, or its key without its
// payload) and lost the second, which was acknowledged. The replay brings
// back the second use, deliveries and all.
func TestJournalReusedID(t *testing.T) {
	for _, lostPayload := range []bool{false, true} {
		t.Run(fmt.Sprintf("lost payload %v", lostPayload), func(t *testing.T) {
			dir := t.TempDir()
			first := oneIngest("x", t0, "a")
			first.Event.Data = []byte(`"` + strings.Repeat("1", 2000) + `"`)
			s := openStore(t, Options{Dir: dir, Retention: time.Second, sweepEvery: -1})
			ingest(t, s, first)
			deliverAll(t, s, "x/a")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if lostPayload {
				loseValueLogTail(t, dir)
			}
			waitExpired(time.Now(), time.Second)
			// Received later, as a use of an id after its first use
			// expired must be.
			second := oneIngest("x", t0, "b")
			second.Event.Data = []byte(`"second"`)
			second.Event.Received = t0.Add(time.Hour)
			second.Deliveries[0].Created = second.Event.Received
			data := appendJournalIngest(nil, &first, nil, t0)
			data = appendJournalIngest(data, &second, nil, t0)
			if err := os.WriteFile(filepath.Join(dir, journalName(100)), data, 0o600); err != nil {
				t.Fatal(err)
			}
			s = openStore(t, Options{Dir: dir, Retention: time.Second, sweepEvery: -1})
			if ev, err := s.Event("x"); err != nil || string(ev.Data) != `"second"` {
				t.Errorf("second use of x after the replay: %v", err)
			}
			if _, err := s.Delivery("x/b"); err != nil {
				t.Errorf("second use's delivery x/b after the replay: %v", err)
			}
		})
	}
}

// An ingest with no deliveries keeps only its idempotency key (TTL'd):
// replayed after the window, the key stays expired.
func TestJournalDoesNotBringBackExpiredKey(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, DedupeWindow: time.Second, sweepEvery: -1}
	s := openStore(t, opts)
	failCheckpoints(t, dir)
	start := time.Now()
	ingest(t, s, Ingest{Event: newEvent("one", `{}`), Dedupe: "k"})
	if err := s.durable(); err != nil {
		t.Fatal(err)
	}
	waitExpired(start, time.Second)
	crash := copyDir(t, dir)
	opts.Dir = crash
	s2 := openStore(t, opts)
	if res := ingest(t, s2, Ingest{Event: newEvent("two", `{}`), Dedupe: "k"}); res[0].Duplicate {
		t.Errorf("key k past its window is live again after the replay: %+v", res[0])
	}
}

// A small event (inline in the LSM tree, intact) whose delivery, with a
// long order key, went to the value log and lost its payload: the replay
// writes the delivery again.
func TestJournalRepairsDeliveryOfIntactEvent(t *testing.T) {
	s, _ := afterLostTail(t, func(s *Badger) {
		in := oneIngest("ord", t0, "a")
		in.Deliveries[0].OrderKey = strings.Repeat("k", 300)
		if n := len(encodeEvent(in.Event)); n >= valueThreshold {
			t.Fatalf("event record %d bytes, want it inline", n)
		}
		if n := len(encodeDelivery(in.Deliveries[0])); n < valueThreshold {
			t.Fatalf("delivery record %d bytes, want it in the value log", n)
		}
		ingest(t, s, in)
	})
	if _, err := s.Event("ord"); err != nil {
		t.Fatalf("event: %v", err)
	}
	if _, err := s.Delivery("ord/a"); err != nil {
		t.Errorf("acknowledged delivery ord/a unreadable after the replay: %v", err)
	}
}

// An ingest delivered, its delivery record expired by its TTL and its
// event gone by its state, while its journal segment outlived it
// (checkpoints failing) and the event's payload was lost: the replay must
// not take the key for an earlier use's and deliver the event again.
func TestJournalDoesNotBringBackDeliveredExpiredEvent(t *testing.T) {
	dir := t.TempDir()
	in := oneIngest("x", t0, "a")
	in.Event.Data = []byte(`"` + strings.Repeat("1", 2000) + `"`)
	opts := Options{Dir: dir, Retention: time.Second, sweepEvery: -1}
	s := openStore(t, opts)
	failCheckpoints(t, dir)
	ingest(t, s, in)
	deliverAll(t, s, "x/a")
	start := time.Now()
	if err := s.durable(); err != nil {
		t.Fatal(err)
	}
	waitExpired(start, time.Second)
	if _, err := s.Event("x"); err == nil {
		t.Fatal("x not gone yet")
	}
	crash := copyDir(t, dir)
	// Power loss: the value log's unsynced tail (x's payload) is lost.
	loseValueLogTail(t, crash)
	opts.Dir = crash
	s2 := openStore(t, opts)
	if ev, err := s2.Event("x"); err == nil && ev != nil {
		t.Errorf("delivered, expired event x is back after the replay")
	}
	if d, err := s2.Delivery("x/a"); err == nil {
		t.Errorf("delivered x/a is back as %s, due on a: %v", d.Status, dueOn(t, s2, "a"))
	}
}
