package natsstore

import (
	"fmt"
	"testing"

	"github.com/hookgate/hookgate/persist"
)

// TestRecentEventsBounded: the records kept for outcomes stay within
// their count and byte bounds, whatever is put, and a record put again
// is counted once.
func TestRecentEventsBounded(t *testing.T) {
	var r recentEvents
	check := func(when string) {
		t.Helper()
		sum := 0
		for _, e := range r.m {
			sum += e.size
		}
		if sum != r.bytes || len(r.m) > maxRecentEvents || r.bytes > maxRecentBytes {
			t.Fatalf("%s: %d records, %d bytes counted, %d held; bounds %d records, %d bytes",
				when, len(r.m), r.bytes, sum, maxRecentEvents, maxRecentBytes)
		}
	}
	for i := range 3 * maxRecentEvents {
		r.put(fmt.Sprint("small", i), uint64(i+1), &eventRecord{}, 100)
	}
	check("after many small records")
	if len(r.m) != maxRecentEvents {
		t.Fatalf("%d small records kept, want %d", len(r.m), maxRecentEvents)
	}
	for i := range 1000 {
		r.put(fmt.Sprint("big", i), 1, &eventRecord{}, maxRecentRecord)
	}
	check("after many records of the largest size kept")
	r.put("huge", 1, &eventRecord{}, maxRecentRecord+1)
	if _, _, ok := r.take("huge"); ok {
		t.Fatal("a record over maxRecentRecord was kept")
	}
	first, second := &eventRecord{}, &eventRecord{}
	r.put("x", 1, first, 10)
	r.put("x", 2, second, 20)
	check("after putting x twice")
	if rev, rec, ok := r.take("x"); !ok || rev != 2 || rec != second {
		t.Fatalf("take(x) = rev %d, %p, %v; want the later record (%p)", rev, rec, ok, second)
	}
	if _, _, ok := r.take("x"); ok {
		t.Fatal("x was still kept after take")
	}
	check("after take")
}

// TestIndependent: what keeps a batch in order.
func TestIndependent(t *testing.T) {
	in := func(id, key, order string) persist.Ingest {
		return persist.Ingest{Event: &persist.Event{ID: id}, Dedupe: key,
			Deliveries: []*persist.Delivery{{ID: id + "/r", Route: "r", OrderKey: order}}}
	}
	for _, c := range []struct {
		name  string
		batch []persist.Ingest
		want  bool
	}{
		{"one element", []persist.Ingest{in("a", "", "")}, false},
		{"distinct, no keys", []persist.Ingest{in("a", "", ""), in("b", "", "")}, true},
		{"distinct keys", []persist.Ingest{in("a", "k1", ""), in("b", "k2", "")}, true},
		{"a shared key", []persist.Ingest{in("a", "k", ""), in("b", "k", "")}, false},
		{"a shared id", []persist.Ingest{in("a", "", ""), in("a", "", "")}, false},
		{"a key equal to its own id", []persist.Ingest{in("a", "a", ""), in("b", "b", "")}, true},
		{"a key equal to another's id", []persist.Ingest{in("a", "b", ""), in("b", "", "")}, false},
		{"a shared delivery id", []persist.Ingest{in("a", "", ""), {Event: &persist.Event{ID: "b"},
			Deliveries: []*persist.Delivery{{ID: "a/r", Route: "r"}}}}, false},
		{"an order key", []persist.Ingest{in("a", "", ""), in("b", "", "o")}, false},
	} {
		if got := independent(c.batch); got != c.want {
			t.Errorf("%s: independent = %v, want %v", c.name, got, c.want)
		}
	}
}
