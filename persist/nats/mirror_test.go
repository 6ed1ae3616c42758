package natsstore

import (
	"fmt"
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
		for _, d := range s.ready("r") {
			out = append(out, d.ID)
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
