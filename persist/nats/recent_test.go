package natsstore

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/persist"
)

// TestEventCacheBounded: the records kept for outcomes and loads stay
// within their count and byte bounds, whatever is put; a record put
// again is counted once; get keeps it, take does not.
func TestEventCacheBounded(t *testing.T) {
	var c eventCache[recentEvent]
	check := func(when string) {
		t.Helper()
		sum := 0
		for _, e := range c.m {
			sum += e.size
		}
		if sum != c.bytes || len(c.m) > maxCachedEvents || c.bytes > maxCachedBytes {
			t.Fatalf("%s: %d records, %d bytes counted, %d held; bounds %d records, %d bytes",
				when, len(c.m), c.bytes, sum, maxCachedEvents, maxCachedBytes)
		}
	}
	for i := range 3 * maxCachedEvents {
		c.put(fmt.Sprint("small", i), recentEvent{uint64(i + 1), &eventRecord{}}, 100)
	}
	check("after many small records")
	if len(c.m) != maxCachedEvents {
		t.Fatalf("%d small records kept, want %d", len(c.m), maxCachedEvents)
	}
	for i := range 1000 {
		c.put(fmt.Sprint("big", i), recentEvent{1, &eventRecord{}}, maxCachedRecord)
	}
	check("after many records of the largest size kept")
	c.put("huge", recentEvent{1, &eventRecord{}}, maxCachedRecord+1)
	if _, ok := c.take("huge"); ok {
		t.Fatal("a record over maxCachedRecord was kept")
	}
	first, second := &eventRecord{}, &eventRecord{}
	c.put("x", recentEvent{1, first}, 10)
	c.put("x", recentEvent{2, second}, 20)
	check("after putting x twice")
	if e, ok := c.get("x"); !ok || e.rev != 2 || e.rec != second {
		t.Fatalf("get(x) = %+v, %v; want the later record (%p)", e, ok, second)
	}
	if e, ok := c.take("x"); !ok || e.rev != 2 || e.rec != second {
		t.Fatalf("take(x) = %+v, %v; want the later record (%p)", e, ok, second)
	}
	if _, ok := c.take("x"); ok {
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

// Unavailable tells NATS not answering now from other errors, so that the
// admin API says 503 (try again) rather than 500.
func TestUnavailable(t *testing.T) {
	for err, want := range map[error]bool{
		fmt.Errorf("reading event x: %w", nats.ErrTimeout): true,
		fmt.Errorf("x: %w", nats.ErrNoResponders):          true,
		fmt.Errorf("x: %w", ErrUnavailable):                true,
		fmt.Errorf("x: %w", context.DeadlineExceeded):      true,
		fmt.Errorf("x: %w", &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}): true,
		fmt.Errorf("x: %w", &jetstream.APIError{Code: 400, ErrorCode: 10071, Description: "wrong last sequence"}):                      false,
		errors.New("decoding delivery: truncated"): false,
	} {
		if got := Unavailable(err); got != want {
			t.Errorf("Unavailable(%v) = %v, want %v", err, got, want)
		}
	}
}
