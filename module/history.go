package module

import (
	"math"
	"sync"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// The last hour of each route's attempts, minute by minute, for the
// console's charts. It lives in memory, per node: it starts empty when
// Caddy starts and counts only the attempts this process made (on a
// shared outbox each node shows its own). A config reload keeps it.

// HistoryMinutes is how many minutes History returns.
const HistoryMinutes = 60

// MinuteStats is one minute of a route's attempts on this node.
type MinuteStats struct {
	// Start is the minute's beginning, in the engine's clock (UTC).
	Start time.Time `json:"start"`
	// Delivered counts attempts that delivered; Failed those that did
	// not (a retry later, or dead), and Dead those of them that left the
	// delivery dead.
	Delivered int `json:"delivered"`
	Failed    int `json:"failed"`
	Dead      int `json:"dead"`
	// P50 and P99 are the median and 99th percentile of the attempts'
	// durations (zero in a minute without attempts). They are read from
	// a histogram with buckets about 19% wide, so they are within that
	// of the exact value.
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
}

// Latency buckets: bucket i holds durations up to histBase·histGrowth^i,
// the last one everything longer (about 2.5 minutes and up).
const (
	histBuckets = 64
	histBase    = 500 * time.Microsecond
	histGrowth  = 1.22
)

// minuteSlot is one minute of the ring.
type minuteSlot struct {
	minute                  int64 // unix minute this slot holds; stale slots hold an older one
	delivered, failed, dead int
	lat                     [histBuckets]uint32
}

// history is one route's ring of the last HistoryMinutes minutes.
type history struct {
	mu    sync.Mutex
	slots [HistoryMinutes]minuteSlot
}

// add counts one attempt that ended at end, took dur and left the
// delivery in status st.
func (h *history) add(end time.Time, st persist.Status, dur time.Duration) {
	m := end.Unix() / 60
	i := int(((m % HistoryMinutes) + HistoryMinutes) % HistoryMinutes)
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &h.slots[i]
	if s.minute != m {
		if m < s.minute {
			return // older than the ring holds
		}
		*s = minuteSlot{minute: m}
	}
	switch st {
	case persist.StatusDelivered:
		s.delivered++
	case persist.StatusDead:
		s.failed++
		s.dead++
	default:
		s.failed++
	}
	s.lat[latencyBucket(dur)]++
}

// latencyBucket returns the bucket a duration falls in.
func latencyBucket(d time.Duration) int {
	if d <= histBase {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(histBase)) / math.Log(histGrowth)))
	return min(i, histBuckets-1)
}

// bucketTop is the longest duration bucket i holds.
func bucketTop(i int) time.Duration {
	return time.Duration(float64(histBase) * math.Pow(histGrowth, float64(i)))
}

// quantile returns the duration below which q of the counted attempts
// fall (the top of the bucket that holds it).
func quantile(lat *[histBuckets]uint32, n int, q float64) time.Duration {
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(n)))
	seen := 0
	for i, c := range lat {
		seen += int(c)
		if seen >= rank {
			return bucketTop(i)
		}
	}
	return bucketTop(histBuckets - 1)
}

// last returns the HistoryMinutes minutes up to and including now's,
// oldest first; minutes without attempts are zero but for Start.
func (h *history) last(now time.Time) []MinuteStats {
	cur := now.Unix() / 60
	out := make([]MinuteStats, HistoryMinutes)
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := range out {
		m := cur - HistoryMinutes + 1 + int64(k)
		ms := MinuteStats{Start: time.Unix(m*60, 0).UTC()}
		s := &h.slots[int(((m%HistoryMinutes)+HistoryMinutes)%HistoryMinutes)]
		if s.minute == m {
			n := s.delivered + s.failed
			ms.Delivered, ms.Failed, ms.Dead = s.delivered, s.failed, s.dead
			ms.P50 = quantile(&s.lat, n, 0.50)
			ms.P99 = quantile(&s.lat, n, 0.99)
		}
		out[k] = ms
	}
	return out
}

// History returns the named route's attempts on this node over the last
// hour, one MinuteStats per minute (HistoryMinutes of them, oldest
// first, the current minute last), or nil for a route the engine does
// not know. It is kept in memory: it starts empty when the process
// starts, survives reloads, and counts only this node's attempts.
func (e *Engine) History(route string) []MinuteStats {
	e.mu.RLock()
	d, ok := e.dispatchers[route]
	e.mu.RUnlock()
	if !ok {
		return nil
	}
	return d.hist.last(e.now())
}
