package module

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/time/rate"

	"github.com/hookgate/hookgate/persist"
)

func TestBreakerStateMachine(t *testing.T) {
	c, err := compileBreaker(3, caddy.Duration(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if c.threshold != 3 || c.cooldown != time.Second || c.maxCooldown != time.Minute {
		t.Fatalf("config %+v", c)
	}
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var b breaker
	mustAllow := func(wantProbe bool) {
		t.Helper()
		ok, probe, _ := b.allow(c, now)
		if !ok || probe != wantProbe {
			t.Fatalf("allow at %s = %v probe %v, want true probe %v (breaker %+v)", now, ok, probe, wantProbe, b)
		}
		if probe {
			b.probing = true
		}
	}
	mustRefuse := func(wantUntil time.Time) {
		t.Helper()
		ok, _, until := b.allow(c, now)
		if ok || !until.Equal(wantUntil) {
			t.Fatalf("allow at %s = %v until %s, want false until %s", now, ok, until, wantUntil)
		}
	}

	// Final answers (a 404) and neutral failures do not count; a success
	// resets the count.
	for _, v := range []verdict{verdictDown, verdictDown, verdictUp, verdictDown, verdictDown, verdictNeutral} {
		mustAllow(false)
		if tr := b.record(c, v, false, now); tr != noTransition {
			t.Fatalf("transition %v before the threshold", tr)
		}
	}
	if b.stateAt(now) != circuitClosed {
		t.Fatalf("state %s", b.stateAt(now))
	}
	if tr := b.record(c, verdictDown, false, now); tr != circuitOpened {
		t.Fatalf("third consecutive failure: transition %v, want opened", tr)
	}
	if b.stateAt(now) != circuitOpen {
		t.Fatalf("state %s, want open", b.stateAt(now))
	}
	mustRefuse(now.Add(time.Second))
	// An attempt that started before the circuit opened changes nothing.
	if tr := b.record(c, verdictUp, false, now); tr != noTransition || b.stateAt(now) != circuitOpen {
		t.Fatalf("straggler success: transition %v state %s", tr, b.stateAt(now))
	}

	// The cool-down doubles with each failed probe, up to the cap.
	wantCool := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	for i, cool := range wantCool {
		now = now.Add(time.Duration(1) << i * time.Second)
		if b.stateAt(now) != circuitHalfOpen {
			t.Fatalf("probe %d: state %s, want half_open", i, b.stateAt(now))
		}
		mustAllow(true)
		mustRefuse(time.Time{}) // one probe at a time
		if tr := b.record(c, verdictDown, true, now); tr != circuitReopened {
			t.Fatalf("failed probe %d: transition %v", i, tr)
		}
		if b.cooldown != cool {
			t.Fatalf("after failed probe %d: cool-down %s, want %s", i, b.cooldown, cool)
		}
		now = now.Add(b.cooldown - time.Duration(1)<<(i+1)*time.Second)
	}

	// A probe that ends without an outcome lets another go.
	now = now.Add(time.Hour)
	mustAllow(true)
	b.release(true)
	mustAllow(true)
	if tr := b.record(c, verdictNeutral, true, now); tr != noTransition {
		t.Fatalf("neutral probe: %v", tr)
	}
	mustAllow(true)
	if tr := b.record(c, verdictUp, true, now); tr != circuitClosedAgain {
		t.Fatalf("probe success: transition %v", tr)
	}
	if b.stateAt(now) != circuitClosed {
		t.Fatalf("state %s after a successful probe", b.stateAt(now))
	}
	mustAllow(false)
	// Closing starts the count and the cool-down afresh.
	for i := 0; i < 3; i++ {
		b.record(c, verdictDown, false, now)
	}
	if b.cooldown != time.Second {
		t.Fatalf("reopened with cool-down %s, want the first one", b.cooldown)
	}

	// Off: never opens, and turning it off closes an open circuit.
	off, _ := compileBreaker(-1, 0)
	if off.on() {
		t.Fatal("breaker -1 is on")
	}
	if ok, _, _ := b.allow(off, now); !ok || b.stateAt(now) != circuitClosed {
		t.Fatalf("an open circuit did not close when the breaker was turned off")
	}
	for i := 0; i < 100; i++ {
		b.record(off, verdictDown, false, now)
	}
	if b.stateAt(now) != circuitClosed {
		t.Fatal("a breaker that is off opened")
	}
	def, _ := compileBreaker(0, 0)
	if def.threshold != 10 || def.cooldown != 5*time.Second || def.maxCooldown != 5*time.Minute {
		t.Fatalf("defaults %+v", def)
	}
	if _, err := compileBreaker(1, caddy.Duration(-time.Second)); err == nil {
		t.Fatal("negative cool-down accepted")
	}
}

func TestVerdictOf(t *testing.T) {
	tests := []struct {
		status int
		err    error
		want   verdict
	}{
		{200, nil, verdictUp},
		{404, nil, verdictUp}, // final: the endpoint is there
		{410, nil, verdictUp},
		{302, nil, verdictUp},
		{429, nil, verdictDown},
		{408, nil, verdictDown},
		{503, nil, verdictDown},
	}
	for _, tc := range tests {
		res := result{status: tc.status}
		classifyStatus(&res, "", time.Now())
		if got := verdictOf(res); got != tc.want {
			t.Errorf("%d: verdict %v, want %v", tc.status, got, tc.want)
		}
	}
	for class, want := range map[string]verdict{
		classConnect: verdictDown, classTimeout: verdictDown, classDNS: verdictDown, classTLS: verdictDown,
		classEgressDenied: verdictNeutral, classBadURL: verdictNeutral, classInvalidRequest: verdictNeutral,
	} {
		res := result{class: class, retry: class != classEgressDenied && class != classBadURL && class != classInvalidRequest}
		if got := verdictOf(res); got != want {
			t.Errorf("%s: verdict %v, want %v", class, got, want)
		}
	}
}

func TestParseRate(t *testing.T) {
	good := []struct {
		in    string
		limit rate.Limit
		burst int
	}{
		{"50/s", 50, 5},
		{"1/s", 1, 1},
		{"1000/s", 1000, 100},
		{"60/m", 1, 1},
		{"30/m", 0.5, 1},
	}
	for _, tc := range good {
		rs, err := parseRate(tc.in)
		if err != nil || rs.limit != tc.limit || rs.burst != tc.burst {
			t.Errorf("parseRate(%q) = %+v, %v; want limit %v burst %d", tc.in, rs, err, tc.limit, tc.burst)
		}
	}
	for _, in := range []string{"", "50", "50/h", "0/s", "-1/s", "x/s", "1.5/s", "50/", "/s"} {
		if _, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q) accepted", in)
		}
	}
}

func TestTakeToken(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	rs, _ := parseRate("10/s")
	lim := rate.NewLimiter(rs.limit, rs.burst)
	if ok, _ := takeToken(lim, now); !ok {
		t.Fatal("first token refused")
	}
	ok, at := takeToken(lim, now)
	if ok || !at.Equal(now.Add(100*time.Millisecond)) {
		t.Fatalf("second token at once: %v, next at %s", ok, at.Sub(now))
	}
	// A refusal does not use the token up.
	if ok, _ := takeToken(lim, now.Add(100*time.Millisecond)); !ok {
		t.Fatal("token refused when it was due")
	}
	if ok, _ := takeToken(nil, now); !ok {
		t.Fatal("no limiter refused")
	}
}

func TestCompileRouteOperating(t *testing.T) {
	r, err := compileRoute("erp", &Route{Topics: []string{"*"}, URL: "https://erp.example.com/{env.X}",
		Rate: "5/s", Ordered: "event.data.k", VerifyEndpoint: true, Disabled: true, Breaker: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r.rate == nil || r.rate.limit != 5 || r.order == nil || !r.verify || !r.disabled || r.breaker.threshold != 3 || r.rawURL != "https://erp.example.com/{env.X}" {
		t.Errorf("compiled %+v", r)
	}
	r, _ = compileRoute("erp", &Route{Topics: []string{"*"}, URL: "https://erp.example.com/"})
	if r.rate != nil || r.order != nil || r.verify || r.disabled || r.breaker.threshold != 10 {
		t.Errorf("defaults %+v", r)
	}
	for name, rc := range map[string]*Route{
		"bad rate":          {Rate: "5/h"},
		"bad ordered":       {Ordered: "event.data.("},
		"verify with event": {URL: "https://x.example/{event.data.tenant}", VerifyEndpoint: true},
		"negative cooldown": {BreakerCooldown: caddy.Duration(-time.Second)},
	} {
		rc.Topics = []string{"*"}
		if rc.URL == "" {
			rc.URL = "https://x.example/"
		}
		if _, err := compileRoute("r", rc); err == nil || !strings.Contains(err.Error(), "route r") {
			t.Errorf("%s: error %v, want one naming the route", name, err)
		}
	}
}

// testEngine is an engine on a temporary outbox running routes.
type testEngine struct {
	*Engine
	t      *testing.T
	routes map[string]*route
}

func startTestEngine(t *testing.T, dir string, routes map[string]*Route, tune func(*Engine)) *testEngine {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	e, err := openEngine(dir, zap.NewNop(), persist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(e)
	}
	compiled := make(map[string]*route)
	for name, rc := range routes {
		if rc.Topics == nil {
			rc.Topics = []string{"*"}
		}
		r, err := compileRoute(name, rc)
		if err != nil {
			t.Fatal(err)
		}
		compiled[name] = r
	}
	order := slices.Sorted(maps.Keys(compiled))
	if err := e.start(&runtimeConfig{routes: compiled, order: order, maxPending: 1 << 40, logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}); err != nil {
		t.Fatal(err)
	}
	te := &testEngine{Engine: e, t: t, routes: compiled}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { e.Destruct() }) })
	return te
}

// post accepts one event of type test.event (every route's topic is *
// unless the test set one).
func (te *testEngine) post(data string) string {
	te.t.Helper()
	res, err := te.Accept(context.Background(), []*persist.Event{{Type: "test.event", Data: []byte(data)}})
	if err != nil {
		te.t.Fatal(err)
	}
	return res[0].ID
}

func (te *testEngine) stats(route string) RouteStats {
	for _, st := range te.Stats() {
		if st.Route == route {
			return st
		}
	}
	te.t.Fatalf("no stats for route %s in %+v", route, te.Stats())
	return RouteStats{}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countingSink answers POSTs with status(n) and counts them.
type countingSink struct {
	*httptest.Server
	posts  atomic.Int64
	gets   atomic.Int64
	status func(n int64) int
	get    func(w http.ResponseWriter, r *http.Request)
}

// newFailingSink answers 503 until fail is set to false, then 200.
func newFailingSink(t *testing.T) (*countingSink, *atomic.Bool) {
	fail := new(atomic.Bool)
	fail.Store(true)
	return newCountingSink(t, func(int64) int {
		if fail.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}), fail
}

func newCountingSink(t *testing.T, status func(n int64) int) *countingSink {
	s := &countingSink{status: status}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			s.gets.Add(1)
			if s.get != nil {
				s.get(w, r)
				return
			}
			w.WriteHeader(http.StatusNotFound)
			return
		}
		n := s.posts.Add(1) - 1
		code := http.StatusOK
		if s.status != nil {
			code = s.status(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestEnginePauseResumeAndGone(t *testing.T) {
	dir := t.TempDir()
	gone := atomic.Bool{}
	gone.Store(true)
	sink := newCountingSink(t, func(n int64) int {
		if n == 2 && gone.Load() {
			return http.StatusGone
		}
		return http.StatusOK
	})
	routes := func() map[string]*Route {
		return map[string]*Route{"a": {URL: sink.URL, Concurrency: 1}}
	}
	te := startTestEngine(t, dir, routes(), nil)
	if err := te.SetPaused("nope", true); !errors.Is(err, ErrUnknownRoute) {
		t.Fatalf("setPaused(unknown) = %v, want ErrUnknownRoute", err)
	}
	for i := 0; i < 10; i++ {
		te.post(`{}`)
	}
	waitUntil(t, "the 410 to pause the route", func() bool { return te.stats("a").State == statePaused })
	time.Sleep(300 * time.Millisecond)
	if n := sink.posts.Load(); n != 3 {
		t.Fatalf("%d requests after a 410 on the third, want 3 (paused)", n)
	}
	st := te.stats("a")
	if st.Pending != 7 || st.Delivered != 2 || st.Dead != 1 || st.InFlight != 0 || st.LastSuccess.IsZero() || st.LastFailure.IsZero() {
		t.Fatalf("stats after 410: %+v", st)
	}
	if s := te.routeState(); !strings.Contains(s.PausedReason, "410") {
		t.Fatalf("reason %q", s.PausedReason)
	}
	// Stats say why, for whoever looks (API, CLI, console).
	if st.State != statePaused || !strings.Contains(st.Reason, "410") {
		t.Fatalf("stats after 410: state %q, reason %q; want paused with the 410", st.State, st.Reason)
	}

	// Paused survives a restart; new events queue but are not sent.
	te.Destruct()
	te = startTestEngine(t, dir, routes(), nil)
	te.post(`{}`)
	time.Sleep(300 * time.Millisecond)
	if st := te.stats("a"); st.State != statePaused || st.Pending != 8 || st.Dead != 1 || sink.posts.Load() != 3 {
		t.Fatalf("after restart: %+v, %d requests", st, sink.posts.Load())
	}
	if err := te.SetPaused("a", false); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the rest to be delivered", func() bool { return te.stats("a").Pending == 0 })
	if n := sink.posts.Load(); n != 11 {
		t.Fatalf("%d requests in all, want 11", n)
	}
	if st := te.stats("a"); st.State != stateActive || st.Delivered != 8 || st.Reason != "" {
		t.Fatalf("after resume: %+v", st)
	}

	// An operator's pause and resume, and a removed route.
	if err := te.SetPaused("a", true); err != nil {
		t.Fatal(err)
	}
	if s := te.routeState(); s.PausedReason != "paused by an operator" {
		t.Fatalf("reason %q", s.PausedReason)
	}
	te.apply(&runtimeConfig{logger: zap.NewNop()})
	if st := te.stats("a"); st.State != stateRemoved {
		t.Fatalf("state of a removed route: %s", st.State)
	}
}

// routeState is the stored state of route a, read back from the outbox.
func (te *testEngine) routeState() persist.RouteState {
	te.t.Helper()
	sts, err := te.store.RouteStates()
	if err != nil {
		te.t.Fatal(err)
	}
	return sts["a"]
}

func TestEngineVerifyEndpoint(t *testing.T) {
	echo := newCountingSink(t, nil)
	echo.get = func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.URL.Query().Get("check")))
	}
	liar := newCountingSink(t, nil)
	liar.get = func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.URL.Query().Get("check") + "\n"))
	}
	dir := t.TempDir()
	routes := map[string]*Route{
		"good": {URL: echo.URL + "/hook?x=1", VerifyEndpoint: true},
		"bad":  {URL: liar.URL + "/hook", VerifyEndpoint: true},
	}
	te := startTestEngine(t, dir, routes, func(e *Engine) { e.verifyEvery = 100 * time.Millisecond })
	// No check before there is something to deliver.
	time.Sleep(200 * time.Millisecond)
	if echo.gets.Load() != 0 || te.stats("good").State != stateUnverified {
		t.Fatalf("checked with nothing to deliver: %d GETs, state %s", echo.gets.Load(), te.stats("good").State)
	}
	for i := 0; i < 5; i++ {
		te.post(`{}`)
	}
	waitUntil(t, "deliveries to the verified endpoint", func() bool { return echo.posts.Load() == 5 })
	waitUntil(t, "checks to be retried", func() bool { return liar.gets.Load() >= 3 })
	if st := te.stats("bad"); st.State != stateUnverified || st.Pending != 5 || liar.posts.Load() != 0 ||
		!strings.HasPrefix(st.Reason, "endpoint verification failed: ") {
		t.Fatalf("bad route: %+v, %d POSTs; want unverified, saying why", st, liar.posts.Load())
	}
	if st := te.stats("good"); st.State != stateActive || echo.gets.Load() != 1 {
		t.Fatalf("good route: %+v, %d GETs", st, echo.gets.Load())
	}

	// A restart does not check again; a changed URL does.
	te.Destruct()
	te = startTestEngine(t, dir, map[string]*Route{"good": {URL: echo.URL + "/hook?x=1", VerifyEndpoint: true}}, nil)
	te.post(`{}`)
	waitUntil(t, "a delivery after restart", func() bool { return echo.posts.Load() == 6 })
	if n := echo.gets.Load(); n != 1 {
		t.Fatalf("%d GETs after a restart, want 1 (no new check)", n)
	}
	te.Destruct()
	te = startTestEngine(t, dir, map[string]*Route{"good": {URL: echo.URL + "/other", VerifyEndpoint: true}}, nil)
	te.post(`{}`)
	waitUntil(t, "a delivery after the URL changed", func() bool { return echo.posts.Load() == 7 })
	if n := echo.gets.Load(); n != 2 {
		t.Fatalf("%d GETs after the URL changed, want 2", n)
	}
}

func TestEngineDisabledAndBreakerStats(t *testing.T) {
	sink, fail := newFailingSink(t)
	routes := map[string]*Route{
		"off": {URL: sink.URL, Disabled: true},
		"brk": {URL: sink.URL, Concurrency: 1, Breaker: 3, BreakerCooldown: caddy.Duration(200 * time.Millisecond),
			Retry: &RetryPolicy{Attempts: 100, BackoffMin: caddy.Duration(10 * time.Millisecond), BackoffMax: caddy.Duration(10 * time.Millisecond)}},
	}
	te := startTestEngine(t, "", routes, nil)
	for i := 0; i < 5; i++ {
		te.post(`{}`)
	}
	waitUntil(t, "the circuit to open", func() bool { return te.stats("brk").Circuit != circuitClosed })
	if st := te.stats("off"); st.State != stateDisabled || st.Pending != 5 || st.Reason != "disabled in the config" {
		t.Fatalf("disabled route: %+v", st)
	}
	n := sink.posts.Load()
	if n < 3 || n > 4 {
		t.Fatalf("%d requests when the circuit opened after 3 failures", n)
	}
	fail.Store(false)
	waitUntil(t, "the probe to close the circuit and the rest to go", func() bool { return te.stats("brk").Pending == 0 })
	st := te.stats("brk")
	if st.Circuit != circuitClosed || st.Delivered != 5 || st.State != stateActive {
		t.Fatalf("after recovery: %+v", st)
	}
	stats := te.Stats()
	if len(stats) != 2 || stats[0].Route != "brk" || stats[1].Route != "off" {
		t.Fatalf("routeStats not sorted by name: %+v", stats)
	}
	if sink.posts.Load() > 15 {
		t.Fatalf("%d requests: the open circuit let attempts through", sink.posts.Load())
	}
}

// Events whose data puts CR LF into a route header die at their first
// attempt as invalid_request and leave the breaker alone: more of them
// than the breaker's threshold do not open the circuit, and a good event
// after them is delivered.
func TestEngineInvalidHeaderValueIsFinalAndBreakerNeutral(t *testing.T) {
	sink := newCountingSink(t, nil)
	routes := map[string]*Route{
		"brk": {URL: sink.URL, Concurrency: 1, Headers: http.Header{"X-Tenant": {"{event.data.tenant}"}},
			Retry: &RetryPolicy{Attempts: 100, BackoffMin: caddy.Duration(10 * time.Millisecond), BackoffMax: caddy.Duration(10 * time.Millisecond)}},
	}
	te := startTestEngine(t, "", routes, nil)
	const bad = defaultBreaker + 2
	for i := 0; i < bad; i++ {
		te.post(`{"tenant": "acme\r\nX-Injected: yes"}`)
	}
	waitUntil(t, "the bad events to die", func() bool { return te.stats("brk").Dead == bad })
	if st := te.stats("brk"); st.Circuit != circuitClosed {
		t.Fatalf("after %d invalid requests the circuit is %s", bad, st.Circuit)
	}
	te.post(`{"tenant": "acme"}`)
	waitUntil(t, "the good event to be delivered", func() bool { return te.stats("brk").Delivered == 1 })
	if st := te.stats("brk"); st.Circuit != circuitClosed || st.Pending != 0 || st.Dead != bad {
		t.Fatalf("stats %+v", st)
	}
	if n := sink.posts.Load(); n != 1 {
		t.Fatalf("the endpoint got %d requests, want the good one only", n)
	}
	dead, _, err := te.store.ListDeliveries(persist.ListFilter{Route: "brk", Status: persist.StatusDead})
	if err != nil || len(dead) != bad {
		t.Fatalf("dead deliveries: %d, %v", len(dead), err)
	}
	for _, d := range dead {
		if d.Attempts != 1 || d.LastClass != classInvalidRequest || d.LastStatus != 0 {
			t.Errorf("delivery %s: %d attempts, class %q, status %d; want 1 attempt, invalid_request", d.ID, d.Attempts, d.LastClass, d.LastStatus)
		}
	}
}

// Deliveries waiting for a token wait in the dispatcher: they hold no
// concurrency slot, so in flight stays at what the rate lets through.
func TestEngineRateLimitWaitsOutsideSlots(t *testing.T) {
	sink := newCountingSink(t, nil)
	te := startTestEngine(t, "", map[string]*Route{"slow": {URL: sink.URL, Rate: "20/s"}}, nil)
	for i := 0; i < 30; i++ {
		te.post(`{}`)
	}
	maxInFlight := 0
	began := time.Now()
	for time.Since(began) < time.Second {
		maxInFlight = max(maxInFlight, te.stats("slow").InFlight)
		time.Sleep(2 * time.Millisecond)
	}
	sent := sink.posts.Load()
	// Waits holding slots would fill the route's 16 at once; the rate
	// lets through 2, then one every 50 ms (a slow machine may overlap a
	// few attempts, hence the margin).
	if maxInFlight > 8 {
		t.Errorf("%d attempts in flight at once under rate 20/s (burst 2): waits hold slots", maxInFlight)
	}
	// At most 2 + 20 in the first second; at least a few even on a
	// loaded machine.
	if sent < 5 || sent > 25 {
		t.Errorf("%d deliveries in the first second at rate 20/s, want 5 to 25", sent)
	}
	waitUntil(t, "the rest to be delivered", func() bool { return te.stats("slow").Pending == 0 })
}

// Over max_pending, a request whose events are all stored already (a
// retry whose first answer was lost) is answered as duplicates, as below
// the limit; one with any new event is refused whole, and stores nothing.
func TestMaxPendingAnswersRetriesAsDuplicates(t *testing.T) {
	te := startTestEngine(t, "", map[string]*Route{"off": {URL: "http://127.0.0.1:1/", Disabled: true}}, nil)
	cfg := *te.cfg.Load()
	cfg.maxPending = 2
	te.cfg.Store(&cfg)
	accept := func(ids ...string) ([]Accepted, error) {
		var evs []*persist.Event
		for _, id := range ids {
			evs = append(evs, &persist.Event{ID: id, Type: "test.event", Data: []byte(`{}`)})
		}
		return te.Accept(context.Background(), evs)
	}
	if _, err := accept("a", "b"); err != nil {
		t.Fatal(err)
	}
	res, err := accept("a")
	if err != nil || len(res) != 1 || !res[0].Duplicate || res[0].ID != "a" {
		t.Fatalf("retry of a stored event over max_pending: %+v, %v; want a duplicate", res, err)
	}
	if res, err = accept("b", "a"); err != nil || !res[0].Duplicate || !res[1].Duplicate {
		t.Fatalf("retry of a stored batch over max_pending: %+v, %v; want duplicates", res, err)
	}
	for _, ids := range [][]string{{"c"}, {"a", "c"}} {
		if res, err := accept(ids...); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("%v over max_pending: %+v, %v; want ErrOverloaded", ids, res, err)
		}
	}
	if ev, err := te.store.Event("c"); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("refused event c was stored: %+v, %v", ev, err)
	}
	if _, err := te.Accept(context.Background(), []*persist.Event{{Type: "test.event", Data: []byte(`{}`)}}); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("event without an id over max_pending: %v; want ErrOverloaded", err)
	}
	if st := te.stats("off"); st.Pending != 2 {
		t.Fatalf("pending %d, want 2", st.Pending)
	}
}

// Stopping the engine gives an attempt in flight its grace, then cuts
// it: Destruct returns, and the delivery stays pending with no attempt
// spent. (The attempt ran under a context the shutdown never cancelled,
// so a hung endpoint held the stop, and Caddy's, for its whole timeout.)
func TestShutdownCutsAttemptsAfterGrace(t *testing.T) {
	dir := t.TempDir()
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer sink.Close()
	defer close(release) // before the sink closes: it waits for handlers
	te := startTestEngine(t, dir, map[string]*Route{"hang": {URL: sink.URL, Timeout: caddy.Duration(time.Minute)}},
		func(e *Engine) { e.grace = 100 * time.Millisecond })
	id := te.post(`{}`)
	select {
	case <-arrived:
	case <-time.After(15 * time.Second):
		t.Fatal("the attempt never reached the endpoint")
	}
	stopped := make(chan error, 1)
	start := time.Now()
	go func() { stopped <- te.Destruct() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Destruct still waits for the hung attempt after 20 s (grace 100 ms)")
	}
	t.Logf("stopped after %v", time.Since(start))

	st, err := persist.Open(persist.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ev, err := st.Event(id)
	if err != nil || len(ev.Deliveries) != 1 {
		t.Fatalf("event %s: %+v, %v", id, ev, err)
	}
	d, err := st.Delivery(ev.Deliveries[0])
	if err != nil || d.Status != persist.StatusPending || d.Attempts != 0 {
		t.Fatalf("cut delivery: %+v, %v; want pending with no attempt spent", d, err)
	}
}

// A delivery that dies with attempts left in its schedule says that
// max_age ended it; one that ran out of attempts does not.
func TestDeadByMaxAgeSaysSo(t *testing.T) {
	sink := newCountingSink(t, func(int64) int { return http.StatusServiceUnavailable })
	routes := map[string]*Route{
		"aged": {URL: sink.URL, Topics: []string{"aged"}, Breaker: -1,
			Retry: &RetryPolicy{Schedule: []caddy.Duration{caddy.Duration(time.Hour)}, MaxAge: caddy.Duration(time.Second)}},
		"spent": {URL: sink.URL, Topics: []string{"spent"}, Breaker: -1,
			Retry: &RetryPolicy{Schedule: []caddy.Duration{caddy.Duration(10 * time.Millisecond)}, MaxAge: caddy.Duration(time.Hour)}},
	}
	te := startTestEngine(t, "", routes, nil)
	for _, typ := range []string{"aged", "spent"} {
		if _, err := te.Accept(context.Background(), []*persist.Event{{ID: typ, Type: typ, Data: []byte(`{}`)}}); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "both to die", func() bool { return te.stats("aged").Dead == 1 && te.stats("spent").Dead == 1 })
	for typ, wantAge := range map[string]bool{"aged": true, "spent": false} {
		ev, err := te.store.Event(typ)
		if err != nil {
			t.Fatal(err)
		}
		d, err := te.store.Delivery(ev.Deliveries[0])
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(d.LastError, "no retry: max_age (1s)"); got != wantAge {
			t.Errorf("%s: last_error %q; want the max_age reason %v", typ, d.LastError, wantAge)
		}
	}
}

// An open circuit says in the stats when its probe goes: deliveries due
// in the past would otherwise look stuck.
func TestStatsSayWhenTheCircuitProbes(t *testing.T) {
	sink := newCountingSink(t, func(int64) int { return http.StatusServiceUnavailable })
	te := startTestEngine(t, "", map[string]*Route{"brk": {URL: sink.URL, Concurrency: 1, Breaker: 1,
		BreakerCooldown: caddy.Duration(time.Hour)}}, nil)
	te.post(`{}`)
	waitUntil(t, "the circuit to open", func() bool { return te.stats("brk").Circuit == circuitOpen })
	st := te.stats("brk")
	if st.State != stateActive || !strings.Contains(st.Reason, "circuit open") || !strings.Contains(st.Reason, "probe at ") {
		t.Fatalf("stats %+v, want the reason to say when the probe goes", st)
	}
	at, err := time.Parse(time.RFC3339, strings.Fields(st.Reason[strings.Index(st.Reason, "probe at ")+len("probe at "):])[0])
	if err != nil || at.Before(time.Now().Add(50*time.Minute)) {
		t.Errorf("probe time in %q: %v, %v; want about an hour from now", st.Reason, at, err)
	}
}

// Resuming a route ends its open circuit's cool-down: the next pending
// delivery goes as the probe at once, not an hour later; a route whose
// circuit is closed is left as it was.
func TestResumeEndsCircuitCooldown(t *testing.T) {
	sink, fail := newFailingSink(t)
	te := startTestEngine(t, "", map[string]*Route{"brk": {URL: sink.URL, Concurrency: 1, Breaker: 1,
		BreakerCooldown: caddy.Duration(time.Hour),
		Retry:           &RetryPolicy{Attempts: 100, BackoffMin: caddy.Duration(10 * time.Millisecond), BackoffMax: caddy.Duration(10 * time.Millisecond)}}}, nil)
	te.post(`{}`)
	waitUntil(t, "the circuit to open", func() bool { return te.stats("brk").Circuit == circuitOpen })
	te.post(`{}`)
	fail.Store(false)
	if err := te.SetPaused("brk", false); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the probe to close the circuit and both to go", func() bool {
		st := te.stats("brk")
		return st.Circuit == circuitClosed && st.Pending == 0 && st.Delivered == 2
	})
	if err := te.SetPaused("brk", false); err != nil || te.stats("brk").Circuit != circuitClosed {
		t.Fatalf("resume of an active route with its circuit closed: %v, %+v", err, te.stats("brk"))
	}
}

func TestBreakerProbeNow(t *testing.T) {
	c, err := compileBreaker(1, caddy.Duration(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	var b breaker
	if b.probeNow(now) {
		t.Fatal("a closed circuit had a cool-down to end")
	}
	if b.record(c, verdictDown, false, now) != circuitOpened {
		t.Fatal("the circuit did not open")
	}
	if ok, _, _ := b.allow(c, now.Add(time.Minute)); ok {
		t.Fatal("an open circuit let an attempt through within its cool-down")
	}
	if !b.probeNow(now.Add(time.Minute)) {
		t.Fatal("probeNow found no cool-down to end")
	}
	ok, probe, _ := b.allow(c, now.Add(time.Minute))
	if !ok || !probe {
		t.Fatalf("after probeNow: allow %v probe %v, want the probe", ok, probe)
	}
	b.probing = true
	if b.record(c, verdictDown, true, now.Add(time.Minute)) != circuitReopened || b.cooldown != 2*time.Hour {
		t.Fatalf("a failed probe: state %s, cool-down %v; want open again for twice as long", b.state, b.cooldown)
	}
}

// Concurrent requests cannot each see room under max_pending and all go
// in: requests being stored count against the limit too.
func TestMaxPendingHoldsUnderConcurrency(t *testing.T) {
	te := startTestEngine(t, "", map[string]*Route{"off": {URL: "http://127.0.0.1:1/", Disabled: true}}, nil)
	cfg := *te.cfg.Load()
	cfg.maxPending = 50
	te.cfg.Store(&cfg)
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for n := 0; n < 20; n++ {
				_, err := te.Accept(context.Background(), []*persist.Event{{ID: fmt.Sprintf("c%d-%d", c, n), Type: "test.event", Data: []byte(`{}`)}})
				switch {
				case err == nil:
					accepted.Add(1)
				case !errors.Is(err, ErrOverloaded):
					t.Errorf("accept: %v", err)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	if n, st := accepted.Load(), te.stats("off"); n != 50 || st.Pending != 50 {
		t.Errorf("%d accepted, %d pending with max_pending 50; want exactly 50", n, st.Pending)
	}
}
