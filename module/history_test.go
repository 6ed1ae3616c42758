package module

import (
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

func TestHistoryMinutes(t *testing.T) {
	var h history
	now := time.Date(2026, 11, 23, 10, 30, 20, 0, time.UTC)
	// 99 fast deliveries and one slow failure in the current minute.
	for i := 0; i < 99; i++ {
		h.add(now, persist.StatusDelivered, 10*time.Millisecond)
	}
	h.add(now, persist.StatusDead, 3*time.Second)
	// One retry five minutes ago, and one 61 minutes ago (out of the ring).
	h.add(now.Add(-5*time.Minute), persist.StatusPending, 200*time.Millisecond)
	h.add(now.Add(-61*time.Minute), persist.StatusDelivered, time.Millisecond)

	got := h.last(now)
	if len(got) != HistoryMinutes {
		t.Fatalf("%d minutes, want %d", len(got), HistoryMinutes)
	}
	cur := got[HistoryMinutes-1]
	if want := now.Truncate(time.Minute); !cur.Start.Equal(want) {
		t.Fatalf("last minute starts %v, want %v", cur.Start, want)
	}
	if cur.Delivered != 99 || cur.Failed != 1 || cur.Dead != 1 {
		t.Fatalf("current minute %+v, want 99 delivered, 1 failed, 1 dead", cur)
	}
	within := func(name string, got, want time.Duration) {
		t.Helper()
		if got < want || float64(got) > float64(want)*histGrowth {
			t.Errorf("%s = %v, want %v up to %.0f%% more", name, got, want, (histGrowth-1)*100)
		}
	}
	within("p50", cur.P50, 10*time.Millisecond)
	within("p99", cur.P99, 10*time.Millisecond) // the 99th of 100 is still fast
	five := got[HistoryMinutes-6]
	if five.Failed != 1 || five.Delivered != 0 || five.Dead != 0 {
		t.Fatalf("five minutes ago %+v, want one failed attempt", five)
	}
	within("p50 five minutes ago", five.P50, 200*time.Millisecond)
	total := 0
	for _, m := range got {
		total += m.Delivered + m.Failed
	}
	if total != 101 {
		t.Fatalf("%d attempts in the hour, want 101 (the one 61 minutes ago is gone)", total)
	}

	// An hour later every slot is stale.
	for _, m := range h.last(now.Add(time.Hour)) {
		if m.Delivered+m.Failed != 0 {
			t.Fatalf("an hour later: %+v, want nothing", m)
		}
	}
}

func TestLatencyBucketsCoverTheirRange(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, histBase, time.Millisecond, 37 * time.Millisecond, time.Second, 30 * time.Second, time.Hour} {
		i := latencyBucket(d)
		if i < histBuckets-1 && d > bucketTop(i) {
			t.Errorf("%v in bucket %d with top %v", d, i, bucketTop(i))
		}
		if i > 0 && d <= bucketTop(i-1) {
			t.Errorf("%v in bucket %d, but bucket %d (top %v) holds it", d, i, i-1, bucketTop(i-1))
		}
	}
}
