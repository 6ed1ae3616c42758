package natsstore

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// TestReadySkipsFinishedWithoutResorting: a delivery that is delivered
// or dead leaves the ready listing at once, while the sorted cache is
// kept (not sorted again after every outcome); a delivery that becomes
// listable again (a retry) is listed at its new due time.
func TestReadySkipsFinishedWithoutResorting(t *testing.T) {
	s := &Store{mirror: newMirror(), node: "a"}
	m := s.mirror
	t0 := time.Unix(1000, 0)
	put := func(id string, due time.Time, st persist.Status, rev uint64) {
		t.Helper()
		d := &persist.Delivery{ID: id, Route: "r", EventID: "e" + id, Status: st, Due: due}
		if _, ok := m.applyDelivery(id, d, rev, false); !ok {
			t.Fatalf("applying %s at rev %d changed nothing", id, rev)
		}
	}
	ids := func() string {
		var out []string
		refs, _, _, err := s.DueFrom("r", time.Time{}, t0.Add(100*time.Hour), 100, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range refs {
			out = append(out, r.ID)
		}
		return fmt.Sprint(out)
	}
	for i, id := range []string{"a", "b", "c", "d"} {
		put(id, t0.Add(time.Duration(i)*time.Second), persist.StatusPending, uint64(i+1))
	}
	if got := ids(); got != "[a b c d]" {
		t.Fatalf("ready: %s, want [a b c d]", got)
	}

	put("a", t0, persist.StatusDelivered, 10)
	put("c", t0, persist.StatusDead, 11)
	if got := ids(); got != "[b d]" {
		t.Fatalf("ready after a delivered and c dead: %s, want [b d]", got)
	}
	// Kept, not rebuilt: a rebuilt cache would hold [b d].
	if n := len(m.ready["r"]); n != 3 {
		t.Fatalf("ready cache holds %d entries, want 3 (b, stale c, d): outcomes that only remove deliveries must not rebuild it", n)
	}

	// b fails and is retried after d: listable again, at its new place.
	put("b", t0.Add(time.Hour), persist.StatusPending, 12)
	if got := ids(); got != "[d b]" {
		t.Fatalf("ready after b's retry: %s, want [d b]", got)
	}
	// A DueFrom that starts past d lists only b.
	refs, _, _, err := s.DueFrom("r", t0.Add(time.Minute), t0.Add(2*time.Hour), 10, nil)
	if err != nil || len(refs) != 1 || refs[0].ID != "b" {
		t.Fatalf("DueFrom past d: %v %v, want [b]", refs, err)
	}
}

// TestDueFromWalksInChunks: Due walks the ready cache a chunk at a time,
// so deliveries skip drops (in flight here) beyond the first chunk, a
// start past most of the backlog, and stale entries mid-walk all give
// what one pass over the whole listing would.
func TestDueFromWalksInChunks(t *testing.T) {
	s := &Store{mirror: newMirror(), node: "a"}
	m := s.mirror
	t0 := time.Unix(1000, 0)
	const n = 500
	id := func(i int) string { return fmt.Sprintf("d%04d", i) }
	for i := range n {
		d := &persist.Delivery{ID: id(i), Route: "r", Status: persist.StatusPending, Due: t0.Add(time.Duration(i) * time.Millisecond)}
		m.applyDelivery(d.ID, d, uint64(i+1), false)
	}
	now := t0.Add(time.Hour)
	// The first 300 are in flight: skip drops them, across several chunks.
	inFlight := func(s string) bool { return s < id(300) }
	refs, next, last, err := s.DueFrom("r", time.Time{}, now, 10, inFlight)
	if err != nil || len(refs) != 10 || refs[0].ID != id(300) || refs[9].ID != id(309) {
		t.Fatalf("DueFrom with 300 in flight: %v %v, want d0300..d0309", refs, err)
	}
	if want := t0.Add(310 * time.Millisecond); !next.Equal(want) || !last.Equal(t0.Add(309*time.Millisecond)) {
		t.Fatalf("next %v last %v, want next %v (the first not listed) and last at d0309", next, last, want)
	}
	// A walk that starts at d0450 begins there.
	refs, _, _, err = s.DueFrom("r", t0.Add(450*time.Millisecond), now, 100, nil)
	if err != nil || len(refs) != 50 || refs[0].ID != id(450) {
		t.Fatalf("DueFrom from d0450: %d refs starting %v, %v; want 50 from d0450", len(refs), refs[:min(1, len(refs))], err)
	}
	// Deliveries finished since the cache was sorted are skipped, however
	// many of them lead the walk.
	for i := 300; i < 420; i++ {
		d := &persist.Delivery{ID: id(i), Route: "r", Status: persist.StatusDelivered}
		m.applyDelivery(d.ID, d, uint64(n+i), false)
	}
	refs, _, _, err = s.DueFrom("r", time.Time{}, now, 5, inFlight)
	if err != nil || len(refs) != 5 || refs[0].ID != id(420) {
		t.Fatalf("DueFrom after d0300..d0419 were delivered: %v %v, want from d0420", refs, err)
	}
}

// TestReadyChunkReadsAChunk: a look for due deliveries reads the part of
// the ready cache it needs, from where from places it, and odd limits
// end normally.
func TestReadyChunkReadsAChunk(t *testing.T) {
	s := &Store{mirror: newMirror(), node: "a"}
	t0 := time.Unix(1000, 0)
	for i := range 1000 {
		d := &persist.Delivery{ID: fmt.Sprintf("d%04d", i), Route: "r", Status: persist.StatusPending, Due: t0.Add(time.Duration(i) * time.Millisecond)}
		s.mirror.applyDelivery(d.ID, d, uint64(i+1), false)
	}
	at := 0
	got, all := s.readyChunk("r", nil, &at, t0.Add(600*time.Millisecond), 10)
	if len(all) != 1000 || at != 610 || len(got) != 10 || got[0].ID != "d0600" {
		t.Fatalf("readyChunk from d0600, 10: %d returned starting %v, at %d of %d; want 10 from d0600, at 610", len(got), got[:min(1, len(got))], at, len(all))
	}
	for _, limit := range []int{math.MaxInt, 0, -1, -64, -1000} {
		if _, _, _, err := s.DueFrom("r", time.Time{}, t0.Add(time.Hour), limit, nil); err != nil {
			t.Fatalf("DueFrom with limit %d: %v", limit, err)
		}
	}
}
