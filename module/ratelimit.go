package module

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// rateSpec is a route's compiled `rate`.
type rateSpec struct {
	text  string // as configured, to tell a changed limit on reload
	limit rate.Limit
	burst int
}

// parseRate reads "N/s" or "N/m" (N a positive integer). Bursts may use
// a tenth of a second's worth of tokens, at least one: enough to absorb
// timer lateness at high rates without letting a slow rate burst.
func parseRate(s string) (rateSpec, error) {
	n, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	v, err := strconv.Atoi(n)
	if !ok || err != nil || v < 1 {
		return rateSpec{}, fmt.Errorf("rate %q: expected N/s or N/m with N a positive integer", s)
	}
	var per time.Duration
	switch unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	default:
		return rateSpec{}, fmt.Errorf("rate %q: the unit is s (per second) or m (per minute), not %q", s, unit)
	}
	limit := rate.Limit(float64(v) / per.Seconds())
	return rateSpec{text: s, limit: limit, burst: max(1, int(float64(limit)/10))}, nil
}

// limiter returns the route's token bucket, made or updated when the
// route's rate changed; nil when the route has none. Must hold d.mu.
// One bucket serves all of the route's workers: the dispatcher takes a
// token before it starts an attempt, so waiting for one holds no
// concurrency slot.
func (d *dispatcher) limiter(r *route) *rate.Limiter {
	if r.rate == nil {
		d.lim, d.limText = nil, ""
		return nil
	}
	if d.lim == nil || d.limText != r.rate.text {
		d.lim, d.limText = rate.NewLimiter(r.rate.limit, r.rate.burst), r.rate.text
	}
	return d.lim
}

// takeToken takes a token for an attempt starting now, or says when one
// will be there.
func takeToken(lim *rate.Limiter, now time.Time) (ok bool, at time.Time) {
	if lim == nil {
		return true, time.Time{}
	}
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return false, now.Add(time.Second)
	}
	if delay := res.DelayFrom(now); delay > 0 {
		res.CancelAt(now)
		return false, now.Add(delay)
	}
	return true, time.Time{}
}
