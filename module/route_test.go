package module

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/hookgate/hookgate/persist"
)

func TestRouteMatchesAnyTopic(t *testing.T) {
	r, err := compileRoute("r", &Route{Topics: []string{"task.created", "billing.**"}, URL: "https://example.com/x"})
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{
		"task.created": true, "billing": true, "billing.a.b": true,
		"task.finished": false, "task": false,
	} {
		if got := r.matches(s); got != want {
			t.Errorf("matches(%q) = %v, want %v", s, got, want)
		}
	}
}

func sumDurations(ds []time.Duration) time.Duration {
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s
}

func durs(ds ...time.Duration) []caddy.Duration {
	out := make([]caddy.Duration, len(ds))
	for i, d := range ds {
		out[i] = caddy.Duration(d)
	}
	return out
}

func TestCompileRetryDefault(t *testing.T) {
	for _, rp := range []*RetryPolicy{nil, {}} {
		p, err := compileRetry(rp)
		if err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
			5 * time.Hour, 10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour}
		if !equalDurations(p.delays, want) {
			t.Errorf("default delays = %v, want %v", p.delays, want)
		}
		if len(p.delays)+1 != 10 {
			t.Errorf("default schedule makes %d attempts, want 10", len(p.delays)+1)
		}
		sum := sumDurations(p.delays)
		if sum != 75*time.Hour+35*time.Minute+5*time.Second {
			t.Errorf("default schedule sum = %v", sum)
		}
		// 1.2 × 75h35m5s = 90h42m6s, plus a minute of slack.
		if want := 90*time.Hour + 43*time.Minute + 6*time.Second; p.maxAge != want {
			t.Errorf("default maxAge = %v, want %v", p.maxAge, want)
		}
		if p.maxAge < 72*time.Hour {
			t.Errorf("default maxAge %v is under 72h", p.maxAge)
		}
		if float64(p.maxAge) < float64(sum)*1.2 {
			t.Errorf("default maxAge %v does not cover the schedule with +20%% jitter (%v)", p.maxAge,
				time.Duration(float64(sum)*1.2))
		}
	}
}

// With the longest jitter on every delay and a few seconds of dispatch
// latency per attempt, the default policy still makes all ten attempts.
func TestDefaultScheduleRunsToTheEnd(t *testing.T) {
	p, err := compileRetry(nil)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	now := created
	rnd := math.Nextafter(1, 0)
	for a := 1; a <= 9; a++ {
		due, ok := p.next(a, created, now, 0, rnd)
		if !ok {
			t.Fatalf("attempt %d (at %v after creation): delivery died early", a, now.Sub(created))
		}
		now = due.Add(5 * time.Second)
	}
	if _, ok := p.next(10, created, now, 0, rnd); ok {
		t.Errorf("attempt 10 of a 10-attempt schedule: want dead")
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCompileRetry(t *testing.T) {
	tests := []struct {
		name   string
		rp     RetryPolicy
		delays []time.Duration
		maxAge time.Duration
	}{
		{
			name:   "schedule",
			rp:     RetryPolicy{Schedule: durs(5*time.Second, 5*time.Minute, 30*time.Minute)},
			delays: []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute},
			maxAge: 72 * time.Hour,
		},
		{
			name:   "schedule with max_age",
			rp:     RetryPolicy{Schedule: durs(time.Second, 2*time.Second), MaxAge: caddy.Duration(time.Hour)},
			delays: []time.Duration{time.Second, 2 * time.Second},
			maxAge: time.Hour,
		},
		{
			name:   "long schedule stretches the default max_age",
			rp:     RetryPolicy{Schedule: durs(48*time.Hour, 48*time.Hour)},
			delays: []time.Duration{48 * time.Hour, 48 * time.Hour},
			maxAge: 115*time.Hour + 12*time.Minute + time.Minute, // 96h × 1.2 + 1m
		},
		{
			name:   "attempts with backoff",
			rp:     RetryPolicy{Attempts: 5, BackoffMin: caddy.Duration(time.Second), BackoffMax: caddy.Duration(4 * time.Second)},
			delays: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second},
			maxAge: 72 * time.Hour,
		},
		{
			name:   "attempts with default backoff 5s..1h",
			rp:     RetryPolicy{Attempts: 12},
			delays: []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 320 * time.Second, 640 * time.Second, 1280 * time.Second, 2560 * time.Second, time.Hour},
			maxAge: 72 * time.Hour,
		},
		{
			name:   "attempts with min only above the default max",
			rp:     RetryPolicy{Attempts: 3, BackoffMin: caddy.Duration(2 * time.Hour)},
			delays: []time.Duration{2 * time.Hour, 2 * time.Hour},
			maxAge: 72 * time.Hour,
		},
		{
			name:   "one attempt",
			rp:     RetryPolicy{Attempts: 1},
			delays: nil,
			maxAge: 72 * time.Hour,
		},
		{
			name:   "min equals max",
			rp:     RetryPolicy{Attempts: 3, BackoffMin: caddy.Duration(time.Minute), BackoffMax: caddy.Duration(time.Minute)},
			delays: []time.Duration{time.Minute, time.Minute},
			maxAge: 72 * time.Hour,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rp := tc.rp
			p, err := compileRetry(&rp)
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if !equalDurations(p.delays, tc.delays) {
				t.Errorf("delays = %v, want %v", p.delays, tc.delays)
			}
			if p.maxAge != tc.maxAge {
				t.Errorf("maxAge = %v, want %v", p.maxAge, tc.maxAge)
			}
		})
	}
}

func TestCompileRetryErrors(t *testing.T) {
	tests := []struct {
		name   string
		rp     RetryPolicy
		errHas string
	}{
		{"both forms", RetryPolicy{Schedule: durs(time.Second), Attempts: 3}, "not both"},
		{"min above max", RetryPolicy{Attempts: 3, BackoffMin: caddy.Duration(10 * time.Second), BackoffMax: caddy.Duration(5 * time.Second)}, "above max"},
		{"negative attempts", RetryPolicy{Attempts: -1}, "attempts must be positive"},
		{"negative schedule delay", RetryPolicy{Schedule: durs(time.Second, -time.Second)}, "positive"},
		{"zero schedule delay", RetryPolicy{Schedule: durs(0)}, "positive"},
		{"negative max_age", RetryPolicy{MaxAge: caddy.Duration(-time.Hour)}, "negative max_age"},
		{"negative max_age with schedule", RetryPolicy{Schedule: durs(time.Second), MaxAge: caddy.Duration(-time.Second)}, "negative max_age"},
		{"backoff without attempts", RetryPolicy{BackoffMin: caddy.Duration(time.Second), BackoffMax: caddy.Duration(time.Minute)}, "backoff needs attempts"},
		{"backoff max only without attempts", RetryPolicy{BackoffMax: caddy.Duration(time.Minute)}, "backoff needs attempts"},
		// The cases below are silently accepted by compileRetry today (a
		// negative backoff becomes the default, a negative attempts or a
		// backoff next to a schedule is ignored): bugs.
		{"BUG negative backoff min", RetryPolicy{Attempts: 3, BackoffMin: caddy.Duration(-time.Second)}, ""},
		{"BUG negative backoff max", RetryPolicy{Attempts: 3, BackoffMax: caddy.Duration(-time.Second)}, ""},
		{"BUG schedule with negative attempts", RetryPolicy{Schedule: durs(time.Second), Attempts: -2}, ""},
		{"BUG schedule with backoff", RetryPolicy{Schedule: durs(time.Second), BackoffMin: caddy.Duration(time.Second), BackoffMax: caddy.Duration(time.Minute)}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rp := tc.rp
			p, err := compileRetry(&rp)
			if err == nil {
				t.Errorf("%s: compileRetry(%+v) accepted an invalid policy, want an error (got delays %v, maxAge %v)", tc.name, tc.rp, p.delays, p.maxAge)
				return
			}
			if tc.errHas != "" && !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("error %q does not mention %q", err, tc.errHas)
			}
		})
	}
}

func TestCompileRouteDefaultsAndErrors(t *testing.T) {
	r, err := compileRoute("erp", &Route{Topics: []string{"*"}, URL: "https://erp.example.com/x"})
	if err != nil {
		t.Fatal(err)
	}
	if r.timeout != 15*time.Second || r.concurrency != 16 || len(r.retry.delays) != 9 || r.url.Prefix() != "https://erp.example.com/x" {
		t.Errorf("defaults: timeout %v concurrency %d delays %d url prefix %q", r.timeout, r.concurrency, len(r.retry.delays), r.url.Prefix())
	}
	bad := []struct {
		name string
		rc   *Route
	}{
		{"bad name", &Route{Topics: []string{"*"}, URL: "https://x.example/"}},
		{"nil", nil},
		{"no topics", &Route{URL: "https://x.example/"}},
		{"bad topic", &Route{Topics: []string{"a..b"}, URL: "https://x.example/"}},
		{"no url", &Route{Topics: []string{"*"}}},
		{"relative url", &Route{Topics: []string{"*"}, URL: "/x"}},
		{"ftp url", &Route{Topics: []string{"*"}, URL: "ftp://x.example/"}},
		{"negative timeout", &Route{Topics: []string{"*"}, URL: "https://x.example/", Timeout: caddy.Duration(-time.Second)}},
		{"negative concurrency", &Route{Topics: []string{"*"}, URL: "https://x.example/", Concurrency: -1}},
		{"bad retry", &Route{Topics: []string{"*"}, URL: "https://x.example/", Retry: &RetryPolicy{Attempts: -1}}},
	}
	for _, tc := range bad {
		name := "r"
		if tc.name == "bad name" {
			name = "a b"
		}
		if _, err := compileRoute(name, tc.rc); err == nil {
			t.Errorf("%s: want an error", tc.name)
		}
	}
}

func TestRetryNext(t *testing.T) {
	created := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	p := retryPolicy{
		delays: []time.Duration{10 * time.Second, time.Minute, 10 * time.Minute},
		maxAge: time.Hour,
	}
	almostOne := math.Nextafter(1, 0)
	tests := []struct {
		name       string
		attempts   int
		now        time.Time
		retryAfter time.Duration
		rnd        float64
		ok         bool
		due        time.Time
		tolerance  time.Duration // due may be up to this much earlier
	}{
		{name: "rnd 0 is 0.8x", attempts: 1, now: created, rnd: 0, ok: true, due: created.Add(8 * time.Second)},
		{name: "rnd 0.5 is 1.0x", attempts: 1, now: created, rnd: 0.5, ok: true, due: created.Add(10 * time.Second)},
		{name: "rnd near 1 is 1.2x", attempts: 1, now: created, rnd: almostOne, ok: true, due: created.Add(12 * time.Second), tolerance: time.Microsecond},
		{name: "second delay from now", attempts: 2, now: created.Add(20 * time.Second), rnd: 0.5, ok: true, due: created.Add(80 * time.Second)},
		{name: "second delay rnd 0", attempts: 2, now: created.Add(20 * time.Second), rnd: 0, ok: true, due: created.Add(20*time.Second + 48*time.Second)},
		{name: "Retry-After larger wins", attempts: 1, now: created, retryAfter: 30 * time.Second, rnd: 0.5, ok: true, due: created.Add(30 * time.Second)},
		{name: "Retry-After smaller ignored", attempts: 1, now: created, retryAfter: 5 * time.Second, rnd: 0.5, ok: true, due: created.Add(10 * time.Second)},
		{name: "Retry-After larger than jittered delay", attempts: 1, now: created, retryAfter: 9 * time.Second, rnd: 0, ok: true, due: created.Add(9 * time.Second)},
		{name: "Retry-After up to max_age exactly", attempts: 2, now: created.Add(10 * time.Minute), retryAfter: 50 * time.Minute, rnd: 0.5, ok: true, due: created.Add(time.Hour)},
		{name: "Retry-After past max_age ignored", attempts: 2, now: created.Add(10 * time.Minute), retryAfter: 2 * time.Hour, rnd: 0.5, ok: true, due: created.Add(11 * time.Minute)},
		{name: "Retry-After 1ns past max_age ignored", attempts: 2, now: created.Add(10 * time.Minute), retryAfter: 50*time.Minute + 1, rnd: 0.5, ok: true, due: created.Add(11 * time.Minute)},
		{name: "due exactly at max_age", attempts: 3, now: created.Add(50 * time.Minute), rnd: 0.5, ok: true, due: created.Add(time.Hour)},
		{name: "due past max_age is dead", attempts: 3, now: created.Add(55 * time.Minute), rnd: 0.5, ok: false},
		{name: "due 1ns past max_age is dead", attempts: 3, now: created.Add(50*time.Minute + 1), rnd: 0.5, ok: false},
		{name: "beyond schedule is dead", attempts: 4, now: created.Add(time.Minute), rnd: 0.5, ok: false},
		{name: "beyond schedule with Retry-After is dead", attempts: 4, now: created.Add(time.Minute), retryAfter: time.Second, rnd: 0.5, ok: false},
		{name: "zero attempts is dead", attempts: 0, now: created, rnd: 0.5, ok: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			due, ok := p.next(tc.attempts, created, tc.now, tc.retryAfter, tc.rnd)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v (due %v)", ok, tc.ok, due)
			}
			if !ok {
				if !due.IsZero() {
					t.Errorf("dead: due = %v, want zero", due)
				}
				return
			}
			if due.After(tc.due) || due.Before(tc.due.Add(-tc.tolerance)) {
				t.Errorf("due = +%v, want +%v (tolerance %v)", due.Sub(created), tc.due.Sub(created), tc.tolerance)
			}
		})
	}
}

// A delivery requeued from dead gets the whole schedule again, and
// max_age from the requeue, while its attempt count goes on.
func TestRetryNextForRequeued(t *testing.T) {
	created := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	p := retryPolicy{delays: []time.Duration{10 * time.Second, time.Minute}, maxAge: time.Hour}
	d := &persist.Delivery{Created: created, Attempts: 3}
	if _, ok := p.nextFor(d, created.Add(2*time.Minute), 0, 0.5); ok {
		t.Fatal("a delivery past its schedule is not dead")
	}
	// Replayed two days later, after 3 attempts; the first new one fails.
	requeued := created.Add(48 * time.Hour)
	d.ScheduleStart, d.ScheduleBase = requeued, 3
	want := []time.Time{requeued.Add(10 * time.Second), requeued.Add(10*time.Second + time.Minute)}
	now := requeued
	for i, w := range want {
		d.Attempts++
		due, ok := p.nextFor(d, now, 0, 0.5)
		if !ok || !due.Equal(w) {
			t.Fatalf("after attempt %d (the %d. since the requeue): due %s, %v; want %s", d.Attempts, i+1, due, ok, w)
		}
		now = due
	}
	d.Attempts++
	if _, ok := p.nextFor(d, now, 0, 0.5); ok {
		t.Fatal("the new schedule did not run out after its 3 attempts")
	}
	// max_age counts from the requeue: a Retry-After within an hour of
	// it is honoured.
	d.Attempts = 4
	if due, ok := p.nextFor(d, requeued, 50*time.Minute, 0.5); !ok || !due.Equal(requeued.Add(50*time.Minute)) {
		t.Fatalf("Retry-After within max_age of the requeue: due %s, %v", due, ok)
	}
}

// Over many random draws the jittered delay stays within ±20%.
func TestRetryNextJitterBounds(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := retryPolicy{delays: []time.Duration{time.Minute}, maxAge: time.Hour}
	for i := 0; i <= 1000; i++ {
		rnd := float64(i) / 1001
		due, ok := p.next(1, created, created, 0, rnd)
		if !ok {
			t.Fatalf("rnd %v: dead", rnd)
		}
		d := due.Sub(created)
		if d < 48*time.Second || d >= 72*time.Second {
			t.Fatalf("rnd %v: delay %v outside [48s, 72s)", rnd, d)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"120", 120 * time.Second, true},
		{"0", 0, true},
		{"1", time.Second, true},
		{" 7 ", 7 * time.Second, true},
		{"007", 7 * time.Second, true},
		{"2147483648", 2147483648 * time.Second, true},
		{"", 0, false},
		{"   ", 0, false},
		{"abc", 0, false},
		{"-5", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"5s", 0, false},
		{"99999999999999999999", 0, false},
		{"Mon, 23 Nov 2026 10:02:00 GMT", 2 * time.Minute, true},  // RFC 1123 (http.TimeFormat)
		{"Monday, 23-Nov-26 10:02:00 GMT", 2 * time.Minute, true}, // RFC 850
		{"Mon Nov 23 10:02:00 2026", 2 * time.Minute, true},       // ANSI C asctime
		{"Mon, 23 Nov 2026 11:00:00 GMT", time.Hour, true},        // an hour on
		{"Mon, 23 Nov 2026 09:59:00 GMT", 0, true},                // past
		{"Mon, 23 Nov 2026 10:00:00 GMT", 0, true},                // now
		{"Sun, 01 Jan 2006 00:00:00 GMT", 0, true},                // long past
		{"Mon, 23 Nov 2026 10:02:00", 0, false},                   // no zone
		{"2026-11-23T10:02:00Z", 0, false},                        // RFC 3339 is not an HTTP date
		{"Mon, 32 Nov 2026 10:02:00 GMT", 0, false},               // bad day
	}
	for _, tc := range tests {
		got, ok := parseRetryAfter(tc.in, now)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// A delay-seconds value that passes the digit-count check but does not
// fit a time.Duration must not wrap around.
func TestParseRetryAfterOverflow(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, in := range []string{"9999999999", "9223372037", "21474836479", "12345678901"} {
		// Every input here is more seconds than a time.Duration holds
		// (about 292 years): reject it, or clamp it to the maximum.
		d, ok := parseRetryAfter(in, now)
		if ok && d < 290*365*24*time.Hour {
			t.Errorf("BUG: parseRetryAfter(%q) = %v, true: the delay-seconds value overflows time.Duration and wraps; want ok=false (or a delay clamped near math.MaxInt64)", in, d)
		}
	}
}

func TestValidRouteName(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"erp", true},
		{"a", true},
		{"ERP_2-prod.eu", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"", false},
		{"a b", false},
		{"a/b", false},
		{"a:b", false},
		{"é", false},
		{"a*", false},
		{"{env.X}", false},
	}
	for _, tc := range tests {
		if got := validRouteName(tc.in); got != tc.want {
			t.Errorf("validRouteName(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
