package natsstore

import (
	"fmt"
	"testing"
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
			sum += len(e.val)
		}
		if sum != r.bytes || len(r.m) > maxRecentEvents || r.bytes > maxRecentBytes {
			t.Fatalf("%s: %d records, %d bytes counted, %d held; bounds %d records, %d bytes",
				when, len(r.m), r.bytes, sum, maxRecentEvents, maxRecentBytes)
		}
	}
	for i := range 3 * maxRecentEvents {
		r.put(fmt.Sprint("small", i), entry{val: make([]byte, 100), rev: uint64(i + 1)})
	}
	check("after many small records")
	if len(r.m) != maxRecentEvents {
		t.Fatalf("%d small records kept, want %d", len(r.m), maxRecentEvents)
	}
	for i := range 1000 {
		r.put(fmt.Sprint("big", i), entry{val: make([]byte, maxRecentRecord), rev: 1})
	}
	check("after many records of the largest size kept")
	r.put("huge", entry{val: make([]byte, maxRecentRecord+1), rev: 1})
	if _, ok := r.take("huge"); ok {
		t.Fatal("a record over maxRecentRecord was kept")
	}
	r.put("x", entry{val: make([]byte, 10), rev: 1})
	r.put("x", entry{val: make([]byte, 20), rev: 2})
	check("after putting x twice")
	if e, ok := r.take("x"); !ok || e.rev != 2 {
		t.Fatalf("take(x) = rev %d, %v; want the later record", e.rev, ok)
	}
	if _, ok := r.take("x"); ok {
		t.Fatal("x was still kept after take")
	}
	check("after take")
}
