package module

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
	natsstore "github.com/hookgate/hookgate/persist/nats"
)

// spaceStore is an outbox whose space state a test sets.
type spaceStore struct {
	persist.Store
	critical atomic.Bool
}

func (s *spaceStore) Space() persist.Space {
	c := s.critical.Load()
	return persist.Space{Free: 1, MinFree: 2, Full: c, Critical: c}
}

func (s *spaceStore) SetSpaceLimits(int64, int64) {}

// TestEngineHoldsDeliveriesWhileOutcomesRefused checks that a route sends
// nothing while the outbox is below its hard reserve: an attempt whose
// outcome cannot be recorded would be sent again and again.
func TestEngineHoldsDeliveriesWhileOutcomesRefused(t *testing.T) {
	sink := newCountingSink(t, nil)
	var ss *spaceStore
	te := startTestEngine(t, "", map[string]*Route{"a": {URL: sink.URL}}, func(e *Engine) {
		ss = &spaceStore{Store: e.store}
		ss.critical.Store(true)
		e.store = ss
	})
	for i := 0; i < 3; i++ {
		te.post(`{}`)
	}
	time.Sleep(300 * time.Millisecond)
	if n := sink.posts.Load(); n != 0 {
		t.Fatalf("%d requests sent while outcomes could not be recorded, want 0", n)
	}
	// The route is active, and stats say why nothing goes.
	if st := te.stats("a"); st.State != stateActive || !strings.HasPrefix(st.Reason, "deliveries held: the outbox is below its hard reserve") {
		t.Fatalf("stats while held: %+v", st)
	}
	ss.critical.Store(false)
	waitUntil(t, "the held deliveries to go out", func() bool { return te.stats("a").Pending == 0 })
	if st := te.stats("a"); st.Reason != "" {
		t.Fatalf("stats once space returned: reason %q", st.Reason)
	}
	if n := sink.posts.Load(); n != 3 {
		t.Fatalf("%d requests once space returned, want 3", n)
	}
}

func TestSpaceLogState(t *testing.T) {
	var s spaceLogState
	t1 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		raise    bool
		at       time.Duration
		want     bool
		unlogged int // reported with a logged start
	}{
		{true, 0, true, 0},                           // first episode: warn
		{true, time.Second, false, 0},                // still in it
		{false, 2 * time.Second, true, 0},            // ends: the paired info line
		{true, 3 * time.Second, false, 0},            // again within a minute: suppressed
		{true, 3 * time.Second, false, 0},            // (reported twice: one episode)
		{false, 4 * time.Second, false, 0},           // so its end is not logged either
		{true, 5 * time.Second, false, 0},            // a third, suppressed too
		{false, 6 * time.Second, false, 0},           //
		{true, spaceLogEvery + time.Second, true, 2}, // a minute on: warn, counting the two
		{false, spaceLogEvery + 2*time.Second, true, 0},
	}
	for i, st := range steps {
		var (
			got bool
			n   int
		)
		if st.raise {
			got, n = s.raise(t1.Add(st.at))
		} else {
			got = s.clear()
		}
		if got != st.want || n != st.unlogged {
			t.Fatalf("step %d (raise %v at %v) = %v, %d; want %v, %d", i, st.raise, st.at, got, n, st.want, st.unlogged)
		}
	}
}

// A config whose outbox is not the one of the config before it is
// noticed (and warned about at Start); the same directory, or the same
// NATS prefix through another server list, is not a switch.
func TestSwitchedOutbox(t *testing.T) {
	lastOutbox.Lock()
	saved := lastOutbox.outboxRecord
	lastOutbox.outboxRecord = outboxRecord{}
	lastOutbox.Unlock()
	t.Cleanup(func() { lastOutbox.Lock(); lastOutbox.outboxRecord = saved; lastOutbox.Unlock() })

	a, b := backend{dir: "/var/lib/a"}, backend{dir: "/var/lib/b"}
	n1 := backend{nats: &natsstore.Config{Servers: []string{"nats://10.0.0.1:4222"}}}
	n2 := backend{nats: &natsstore.Config{Servers: []string{"nats://10.0.0.1:4222", "nats://10.0.0.2:4222"}}}
	n3 := backend{nats: &natsstore.Config{Servers: []string{"nats://10.0.0.1:4222"}, Prefix: "other"}}
	for i, step := range []struct {
		b    backend
		want string
	}{
		{a, ""}, {a, ""}, {b, "directory /var/lib/a"}, {b, ""},
		{n1, "directory /var/lib/b"}, {n2, ""}, {n3, "NATS prefix " + natsstore.DefaultPrefix},
	} {
		if got := switchedOutbox(new(App), step.b); got != step.want {
			t.Errorf("step %d (%s): switched from %q, want %q", i, step.b.outbox(), got, step.want)
		}
	}

	// A reload Caddy rolls back (another app failed to start) stops the
	// new config before the old one: the old outbox is still the current
	// one. A reload that succeeds stops the old config after the new one
	// started, which changes nothing.
	running, rolledBack, next := new(App), new(App), new(App)
	switchedOutbox(running, a)
	if got := switchedOutbox(rolledBack, b); got != "directory /var/lib/a" {
		t.Fatalf("switch to b: %q", got)
	}
	stoppedOutbox(rolledBack)
	if got := switchedOutbox(next, a); got != "" {
		t.Errorf("a config on the running outbox after a rolled-back one: warned of a switch from %q", got)
	}
	stoppedOutbox(running)
	if got := switchedOutbox(new(App), b); got != "directory /var/lib/a" {
		t.Errorf("after a successful reload's old config stopped: switch from %q, want directory /var/lib/a", got)
	}
}

// A NATS credential given but empty once its placeholders are filled
// in, or a file that is not there, fails the config when it loads (and
// so `caddy validate`), naming the option.
func TestProvisionNATSChecksCredentials(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HG_TEST_NATS_TOKEN", "s3cret")
	base := natsstore.Config{Servers: []string{"nats://127.0.0.1:4222"}}
	for name, tc := range map[string]struct {
		mod  func(*natsstore.Config)
		want string // "" for no error
	}{
		"token from env": {func(c *natsstore.Config) { c.Token = "{env.HG_TEST_NATS_TOKEN}" }, ""},
		"token unset":    {func(c *natsstore.Config) { c.Token = "{env.HG_TEST_NATS_UNSET}" }, "token is empty"},
		"no credentials": {func(c *natsstore.Config) { c.Credentials = filepath.Join(dir, "nope.creds") }, "credentials: stat"},
		"no ca":          {func(c *natsstore.Config) { c.TLS = &natsstore.TLSConfig{CA: filepath.Join(dir, "nope.pem")} }, "tls ca: stat"},
		"ca there":       {func(c *natsstore.Config) { c.TLS = &natsstore.TLSConfig{CA: ca} }, ""},
		"user from env":  {func(c *natsstore.Config) { c.User, c.Password = "u", "{env.HG_TEST_NATS_TOKEN}" }, ""},
		"password unset": {func(c *natsstore.Config) { c.User, c.Password = "u", "{env.HG_TEST_NATS_UNSET}" }, "password is empty"},
	} {
		cfg := base
		tc.mod(&cfg)
		_, err := provisionNATS(cfg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
}

// refusingRecords is an outbox whose outcomes are refused while refuse
// is set, as a full disk's are.
type refusingRecords struct {
	persist.Store
	refuse atomic.Bool
}

func (s *refusingRecords) Record(o persist.Outcome, done func(error)) {
	if s.refuse.Load() {
		done(fmt.Errorf("recording: %w", persist.ErrStorageFull))
		return
	}
	s.Store.Record(o, done)
}

// An attempt whose outcome the outbox refuses is not made again at once:
// the route waits a moment (outcomeSpaceRecheck) each time, so a full
// disk cannot turn into a flood of the same deliveries at the endpoint.
// Counted in a window, whose length a slow machine can only make
// yield fewer attempts.
func TestUnrecordedOutcomeBacksOff(t *testing.T) {
	sink := newCountingSink(t, nil)
	var rs *refusingRecords
	te := startTestEngine(t, "", map[string]*Route{"r": {URL: sink.URL}}, func(e *Engine) {
		rs = &refusingRecords{Store: e.store}
		rs.refuse.Store(true)
		e.store = rs
	})
	id := te.post(`{}`)
	waitUntil(t, "the first attempt", func() bool { return sink.posts.Load() >= 1 })
	time.Sleep(2500 * time.Millisecond)
	if n := sink.posts.Load(); n > 4 {
		t.Errorf("%d attempts in 2.5 s while outcomes were refused; want one a second at most", n)
	}
	rs.refuse.Store(false)
	ev, err := te.store.Event(id)
	if err != nil || len(ev.Deliveries) != 1 {
		t.Fatalf("event %s: %v, %v", id, ev, err)
	}
	waitUntil(t, "the delivery recorded as delivered", func() bool {
		d, err := te.store.Delivery(ev.Deliveries[0])
		return err == nil && d.Status == persist.StatusDelivered
	})
}
