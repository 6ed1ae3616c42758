package module

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/hookgate/hookgate/persist"
)

// Tests of what must hold across restarts, replays and expiry: the
// circuit's open state, a replay's fresh retry schedule and the dead
// count.

// offsetClock is the wall clock moved forward by what a test adds, so
// retries a few milliseconds apart run as usual while a long cool-down
// passes at once.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) advance(d time.Duration) { c.off.Add(int64(d)) }

func TestBreakerPersistedStateRoundTrip(t *testing.T) {
	c, _ := compileBreaker(2, caddy.Duration(time.Minute))
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var b breaker
	if cs := b.persisted(); cs.Open() {
		t.Fatalf("closed circuit persisted as %+v", cs)
	}
	b.record(c, verdictDown, false, now)
	b.record(c, verdictDown, false, now)
	now = now.Add(time.Minute)
	b.allow(c, now) // half open
	b.probing = true
	b.record(c, verdictDown, true, now) // reopened for 2m
	cs := b.persisted()
	if cs.OpenedAt != now.UnixNano() || cs.Cooldown != 2*time.Minute || cs.Failures != 3 {
		t.Fatalf("persisted %+v, want opened at %s for 2m after 3 failures", cs, now)
	}
	var r breaker
	r.restore(cs)
	if st := r.stateAt(now.Add(time.Minute)); st != circuitOpen {
		t.Fatalf("restored circuit is %s within its cool-down", st)
	}
	if ok, _, until := r.allow(c, now.Add(time.Minute)); ok || !until.Equal(now.Add(2*time.Minute)) {
		t.Fatalf("restored circuit allows %v until %s", ok, until)
	}
	if ok, probe, _ := r.allow(c, now.Add(2*time.Minute)); !ok || !probe {
		t.Fatalf("restored circuit after its cool-down: allow %v probe %v, want the probe", ok, probe)
	}
	r.restore(persist.CircuitState{})
	if st := r.stateAt(now); st != circuitClosed {
		t.Fatalf("restoring a closed state gives %s", st)
	}
}

// The circuit's open state survives a restart: the route does not spend
// a fresh round of attempts on an endpoint known to be down.
func TestEngineBreakerSurvivesRestart(t *testing.T) {
	sink, fail := newFailingSink(t)
	clock := &offsetClock{}
	tune := func(e *Engine) { e.now = clock.now }
	routes := func() map[string]*Route {
		return map[string]*Route{"brk": {URL: sink.URL, Concurrency: 1, Breaker: 3, BreakerCooldown: caddy.Duration(time.Hour),
			Retry: &RetryPolicy{Attempts: 100, BackoffMin: caddy.Duration(10 * time.Millisecond), BackoffMax: caddy.Duration(10 * time.Millisecond)}}}
	}
	dir := t.TempDir()
	te := startTestEngine(t, dir, routes(), tune)
	for i := 0; i < 5; i++ {
		te.post(`{}`)
	}
	waitUntil(t, "the circuit to open", func() bool { return te.stats("brk").Circuit == circuitOpen })
	time.Sleep(100 * time.Millisecond)
	if n := sink.posts.Load(); n != 3 {
		t.Fatalf("%d requests when the circuit opened after 3 failures", n)
	}
	stored := func() persist.CircuitState {
		t.Helper()
		sts, err := te.store.RouteStates()
		if err != nil {
			t.Fatal(err)
		}
		return sts["brk"].Circuit
	}
	if cs := stored(); !cs.Open() || cs.Cooldown != time.Hour || cs.Failures != 3 {
		t.Fatalf("stored circuit %+v, want open for 1h after 3 failures", cs)
	}

	// Restart: the circuit is still open and nothing is sent.
	te.Destruct()
	te = startTestEngine(t, dir, routes(), tune)
	if st := te.stats("brk"); st.Circuit != circuitOpen || st.Pending != 5 {
		t.Fatalf("after restart: %+v, want the circuit open and 5 pending", st)
	}
	time.Sleep(300 * time.Millisecond)
	if n := sink.posts.Load(); n != 3 {
		t.Fatalf("%d requests after the restart, want none before the cool-down ends", n)
	}

	// The cool-down ends: exactly one probe; it fails, the circuit reopens
	// for twice as long, and that is stored.
	clock.advance(time.Hour + time.Second)
	te.dispatcherFor("brk").signal()
	waitUntil(t, "the probe", func() bool { return sink.posts.Load() == 4 })
	waitUntil(t, "the circuit to reopen", func() bool { return stored().Cooldown == 2*time.Hour })
	time.Sleep(200 * time.Millisecond)
	if n, st := sink.posts.Load(), te.stats("brk"); n != 4 || st.Circuit != circuitOpen {
		t.Fatalf("after a failed probe: %d requests, circuit %s; want 4 and open", n, st.Circuit)
	}

	// Restart again past the longer cool-down: one probe, it succeeds,
	// the circuit closes, the queue drains and the stored state clears.
	te.Destruct()
	fail.Store(false)
	clock.advance(2*time.Hour + time.Second)
	te = startTestEngine(t, dir, routes(), tune)
	waitUntil(t, "the rest to be delivered", func() bool { return te.stats("brk").Pending == 0 })
	if st := te.stats("brk"); st.Circuit != circuitClosed || st.Delivered != 5 {
		t.Fatalf("after recovery: %+v", st)
	}
	if cs := stored(); cs.Open() {
		t.Fatalf("stored circuit %+v after it closed", cs)
	}
	if n := sink.posts.Load(); n != 9 {
		t.Fatalf("%d requests in all, want 9 (3 failures, 1 failed probe, 5 deliveries)", n)
	}
}

// A dead delivery that is replayed gets its route's whole retry schedule
// again, so an endpoint that needs a few tries after it is back still
// gets the delivery; its history goes on from where it was.
func TestEngineReplayRestartsSchedule(t *testing.T) {
	// Three attempts fail (dead); after the replay two more fail and the
	// third succeeds.
	sink := newCountingSink(t, func(n int64) int {
		if n < 5 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	te := startTestEngine(t, "", map[string]*Route{"r": {URL: sink.URL, Breaker: -1,
		Retry: &RetryPolicy{Attempts: 3, BackoffMin: caddy.Duration(10 * time.Millisecond), BackoffMax: caddy.Duration(10 * time.Millisecond)}}}, nil)
	te.post(`{}`)
	waitUntil(t, "the delivery to die", func() bool { return te.stats("r").Dead == 1 })
	ids, _, err := te.store.ReplayIDs("r", persist.StatusDead, time.Time{}, time.Time{}, "", 10)
	if err != nil || len(ids) != 1 {
		t.Fatalf("ReplayIDs = %v, %v", ids, err)
	}
	if n, err := te.Replay("r", persist.StatusDead, time.Time{}, time.Time{}, 0); err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	waitUntil(t, "the replayed delivery to be final", func() bool {
		st := te.stats("r")
		return st.Pending == 0
	})
	d, err := te.store.Delivery(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != persist.StatusDelivered || d.Attempts != 6 {
		t.Fatalf("replayed delivery: %s after %d attempts (%d requests); want delivered after 6", d.Status, d.Attempts, sink.posts.Load())
	}
	as, err := te.store.Attempts(ids[0])
	if err != nil || len(as) != 6 {
		t.Fatalf("history: %d attempts, %v", len(as), err)
	}
	for i, a := range as {
		if a.N != i+1 {
			t.Fatalf("attempt %d numbered %d", i+1, a.N)
		}
	}
}

// Dead deliveries that expire by dead_retention leave the dead count
// (stats and hookgate_dead) while the engine runs, not at the next start.
func TestEngineDeadCountFollowsExpiry(t *testing.T) {
	sink := newCountingSink(t, func(int64) int { return http.StatusBadRequest })
	te := startTestEngine(t, "", map[string]*Route{"r": {URL: sink.URL}}, func(e *Engine) {
		e.deadRecountEvery = 50 * time.Millisecond
	})
	// Badger's expiry counts whole seconds.
	te.store.SetRetention(0, 0, time.Second)
	for i := 0; i < 3; i++ {
		te.post(`{}`)
	}
	waitUntil(t, "the deliveries to die", func() bool { return te.stats("r").Dead == 3 })
	waitUntil(t, "the dead count to follow their expiry", func() bool { return te.stats("r").Dead == 0 })
	if ds, _, err := te.store.ListDeliveries(persist.ListFilter{Status: persist.StatusDead}); err != nil || len(ds) != 0 {
		t.Fatalf("dead listing after expiry: %d, %v", len(ds), err)
	}
}

// Recounts running all the time while deliveries die and are replayed
// never move the dead count the wrong way: a recount lines the index up
// with the counters at one instant.
func TestEngineDeadRecountRacesOutcomes(t *testing.T) {
	var ok atomic.Bool
	sink := newCountingSink(t, func(int64) int {
		if ok.Load() {
			return http.StatusOK
		}
		return http.StatusBadRequest
	})
	te := startTestEngine(t, "", map[string]*Route{"r": {URL: sink.URL}}, func(e *Engine) {
		e.deadRecountEvery = time.Millisecond
	})
	const n = 300
	var (
		stop    = make(chan struct{})
		sampled = make(chan error, 1)
	)
	go func() {
		// Only deaths happen until stop: the count never falls.
		last := int64(0)
		for {
			select {
			case <-stop:
				sampled <- nil
				return
			default:
			}
			d := te.stats("r").Dead
			if d < last || d > n {
				sampled <- fmt.Errorf("dead count went from %d to %d (of %d)", last, d, n)
				return
			}
			last = d
		}
	}()
	for i := 0; i < n; i++ {
		te.post(`{}`)
	}
	waitUntil(t, "every delivery to die", func() bool { return te.stats("r").Pending == 0 })
	close(stop)
	if err := <-sampled; err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // a few more recounts
	if d := te.stats("r").Dead; d != n {
		t.Fatalf("dead count %d, want %d", d, n)
	}
	// Replayed, they are delivered; the count goes to zero and stays.
	ok.Store(true)
	if got, err := te.Replay("r", persist.StatusDead, time.Time{}, time.Time{}, 0); err != nil || got != n {
		t.Fatalf("Replay = %d, %v", got, err)
	}
	waitUntil(t, "the replayed deliveries to go", func() bool { return te.stats("r").Pending == 0 })
	time.Sleep(20 * time.Millisecond)
	if st := te.stats("r"); st.Dead != 0 || st.Delivered != n {
		t.Fatalf("after the replay: %+v", st)
	}
}
