package module

import (
	"sort"
	"strings"
	"testing"
	"time"
)

func TestNewID(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	id := newID("evt_", now)
	if !strings.HasPrefix(id, "evt_") || len(id) != 4+26 {
		t.Fatalf("newID = %q: want evt_ and 26 characters", id)
	}
	if !ValidID(id) {
		t.Errorf("newID %q is not a valid id", id)
	}
	for _, c := range id[4:] {
		if !strings.ContainsRune("0123456789abcdefghjkmnpqrstvwxyz", c) {
			t.Errorf("newID %q: %q is not in the Crockford alphabet", id, c)
		}
	}
	if d := newID("dlv_", now); !strings.HasPrefix(d, "dlv_") || len(d) != 30 {
		t.Errorf("newID(dlv_) = %q", d)
	}
	if e := newID("", now); len(e) != 26 {
		t.Errorf("newID(\"\") = %q, want 26 characters", e)
	}

	// Ids made at increasing times sort in that order, whatever the random
	// half, from nanoseconds apart to years apart.
	steps := []time.Duration{time.Nanosecond, time.Microsecond, time.Millisecond, time.Second, time.Hour, 24 * time.Hour * 400}
	var ids []string
	at := now
	for i := 0; i < 300; i++ {
		ids = append(ids, newID("evt_", at))
		at = at.Add(steps[i%len(steps)])
	}
	if !sort.StringsAreSorted(ids) {
		for i := 1; i < len(ids); i++ {
			if ids[i-1] >= ids[i] {
				t.Fatalf("ids out of order at %d: %s then %s", i, ids[i-1], ids[i])
			}
		}
	}
	for i := 1; i < len(ids); i++ {
		if ids[i-1] == ids[i] {
			t.Fatalf("repeated id %s", ids[i])
		}
	}

	// The same instant still gives unique ids.
	seen := make(map[string]bool, 10000)
	for i := 0; i < 10000; i++ {
		id := newID("evt_", now)
		if seen[id] {
			t.Fatalf("newID repeated %s after %d ids", id, i)
		}
		seen[id] = true
	}
}

// newID allocates only the id it returns.
func TestNewIDAllocatesOnce(t *testing.T) {
	now := time.Now()
	if n := testing.AllocsPerRun(50, func() { newID("evt_", now) }); n > 1 {
		t.Errorf("%v allocations per id, want 1", n)
	}
	long := strings.Repeat("p", 40) // past the stack buffer
	if id := newID(long, now); !strings.HasPrefix(id, long) || len(id) != len(long)+26 {
		t.Errorf("id %q with a long prefix", id)
	}
}
