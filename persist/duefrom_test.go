package persist

import (
	"testing"
	"time"
)

// TestDueFromStartsAtTheCursor checks that DueFrom skips entries before
// from, reports the last entry it passed, and that Due (from zero) still
// sees everything.
func TestDueFromStartsAtTheCursor(t *testing.T) {
	s := openStore(t, Options{})
	var batch []Ingest
	for i := 0; i < 5; i++ {
		batch = append(batch, oneIngest("e"+string(rune('0'+i)), t0.Add(time.Duration(i)*time.Second), "r"))
	}
	ingest(t, s, batch...)
	now := t0.Add(time.Hour)

	refs, next, last, err := s.DueFrom("r", time.Time{}, now, 2, nil)
	if err != nil || len(refs) != 2 || refs[0].ID != "e0/r" || refs[1].ID != "e1/r" {
		t.Fatalf("first page: %v %v", fmtRefs(refs), err)
	}
	if !last.Equal(t0.Add(time.Second)) || !next.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("last %s next %s", fmtTime(last), fmtTime(next))
	}
	refs, _, last, err = s.DueFrom("r", last, now, 10, func(id string) bool { return id == "e1/r" })
	if err != nil || len(refs) != 3 || refs[0].ID != "e2/r" {
		t.Fatalf("from the cursor: %v %v", fmtRefs(refs), err)
	}
	if !last.Equal(t0.Add(4 * time.Second)) {
		t.Fatalf("last %s", fmtTime(last))
	}
	// An entry due before the cursor is invisible from it, visible from zero.
	refs, _, _, _ = s.DueFrom("r", t0.Add(3*time.Second), now, 10, nil)
	if len(refs) != 2 {
		t.Fatalf("from t0+3s: %v", fmtRefs(refs))
	}
	if refs, _ := mustDue(t, s, "r", now, 10, nil); len(refs) != 5 {
		t.Fatalf("Due: %v", fmtRefs(refs))
	}
}

// TestSetRetentionAppliesToNewWrites checks that a changed dedupe window
// governs keys written after the change.
func TestSetRetentionAppliesToNewWrites(t *testing.T) {
	s := openStore(t, Options{DedupeWindow: time.Hour})
	s.SetRetention(time.Second, 0, 0)
	in := oneIngest("d1", t0, "r")
	in.Dedupe = "k1"
	ingest(t, s, in)
	deadline := time.Now().Add(10 * time.Second)
	for {
		in2 := oneIngest("d2", t0, "r")
		in2.Dedupe = "k1"
		res := ingest(t, s, in2)
		if !res[0].Duplicate {
			break // the 1s window ran out; with the old 1h it never would
		}
		if time.Now().After(deadline) {
			t.Fatalf("dedupe key still live after 10s; SetRetention was ignored")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
