// Package persisttest is the storage contract of hookgate as a test suite:
// every backend of persist.Store runs RunConformance and must pass it
// unchanged. The suite uses only the Store interface, the injected clock
// and what the backend's Harness declares, so a backend shared by
// several processes (where a store's location is a stream prefix, not a
// directory) runs the same tests as the embedded Badger outbox.
//
// A backend that cannot offer part of the contract says so in
// Harness.Lacks; the subtests that need it are skipped with the reason
// given, never passed silently. README must say the same to users.
//
// A backend's entry point, in a _test file of an external test package
// (persist/nats/conformance_test.go is the NATS JetStream one):
//
//	func TestNATSConformance(t *testing.T) {
//		srv := natstest.Run(t) // a real nats-server, in-process
//		persisttest.RunConformance(t, persisttest.Harness{
//			// A location is a stream and bucket prefix.
//			NewDir: func(t *testing.T) string { return uniquePrefix() },
//			Open: func(t *testing.T, prefix string, opts persist.Options) persist.Store {
//				s, err := natsstore.Open(natsstore.Config{Servers: []string{srv.URL()}, Prefix: prefix}, opts)
//				if err != nil {
//					t.Fatal(err)
//				}
//				return s
//			},
//			// A crash: drop the connection without Close, reopen the prefix.
//			Crash: func(t *testing.T, s persist.Store, prefix string) string {
//				s.(*natsstore.Store).Abandon()
//				return prefix
//			},
//			// Lacks: only what is true of the backend, with the real
//			// reason, e.g. persisttest.Expiry: "records expire in
//			// minutes, not seconds". The NATS store lacks nothing.
//		})
//	}
package persisttest

import (
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// Feature names a part of the contract a backend may lack.
type Feature string

// Features the suite may skip when a backend declares it lacks them.
const (
	// Crash: the backend can be abandoned as a killed process would leave
	// it and opened again (Harness.Crash is set). Without it the crash
	// subtests skip.
	Crash Feature = "crash"
	// Expiry: records vanish by retention within the test's patience
	// (a few seconds after a TTL of one second). A backend whose TTLs
	// run in minutes lacks it.
	Expiry Feature = "expiry"
)

// Harness opens the backend under test. Open and NewDir are required.
type Harness struct {
	// NewDir returns a fresh, empty location for one store: a directory
	// for Badger, a stream and bucket prefix for a shared backend. The
	// suite calls it once per subtest and opens the location one or more
	// times (reopen after Close or Crash).
	NewDir func(t *testing.T) string

	// Open opens the store at dir. opts carries what the suite sets
	// (DedupeWindow, Retention, DeadRetention, AttemptLog and Now, the
	// suite's clock, which the store must use for every time it reads
	// itself); opts.Dir is dir, which a backend may read as it likes.
	// Open fails the test when the store cannot be opened. The suite
	// closes every store it opens, at the latest in t.Cleanup.
	Open func(t *testing.T, dir string, opts persist.Options) persist.Store

	// Crash abandons s, open at dir, as a process killed with SIGKILL
	// would: no Close, nothing flushed that was not already durable. It
	// returns the location to open to find what the crash left (dir
	// itself, or a copy of it), and must release s's resources so the
	// test can end. Nil: the backend lacks Crash.
	Crash func(t *testing.T, s persist.Store, dir string) string

	// Lacks lists the features the backend does not offer, each with the
	// reason (shown in the skip message).
	Lacks map[Feature]string

	// ExpiryGrace is how long after a TTL runs out (by the wall clock)
	// the backend may still return the record. Default 5s.
	ExpiryGrace time.Duration
}

// Clock is the suite's clock: the store reads it through Options.Now,
// and the tests move it. It starts at the wall time the test began,
// truncated to the second, so a backend that stamps absolute expiry
// times from it stays near the wall clock it expires by.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time; pass it as Options.Now.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// RunConformance runs the storage contract against the backend h opens.
// Each item of the contract is a subtest: ingest with dedupe, claim,
// outcome, retry at a due time, dead, requeue, replay, ordered keys,
// retention, look-ups, reopen after a close and after a crash.
func RunConformance(t *testing.T, h Harness) {
	if h.Open == nil || h.NewDir == nil {
		t.Fatal("persisttest: Harness.Open and Harness.NewDir are required")
	}
	if h.ExpiryGrace <= 0 {
		h.ExpiryGrace = 5 * time.Second
	}
	if h.Crash == nil {
		if h.Lacks == nil {
			h.Lacks = map[Feature]string{}
		}
		if _, ok := h.Lacks[Crash]; !ok {
			h.Lacks[Crash] = "the harness has no Crash function"
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, newEnv(t, &h))
		})
	}
}

type testCase struct {
	name string
	run  func(t *testing.T, e *env)
}

// cases is the contract, in the order the suite runs it.
var cases = []testCase{
	{"Ingest", testIngest},
	{"IngestKeep", testIngestKeep},
	{"Dedupe", testDedupe},
	{"DedupeWindow", testDedupeWindow},
	{"ReusedIDWhileEventPending", testReusedIDWhileEventPending},
	{"ReusedIDAfterEventGone", testReusedIDAfterEventGone},
	{"Claim", testClaim},
	{"DueFrom", testDueFrom},
	{"OutcomeDelivered", testOutcomeDelivered},
	{"RetryAtDueTime", testRetryAtDueTime},
	{"Dead", testDead},
	{"AttemptLog", testAttemptLog},
	{"Requeue", testRequeue},
	{"Replay", testReplay},
	{"OrderedKeys", testOrderedKeys},
	{"Retention", testRetention},
	{"List", testList},
	{"ListFilter", testListFilter},
	{"RouteState", testRouteState},
	{"EventsReceived", testEventsReceived},
	{"AddDeliveries", testAddDeliveries},
	{"ReopenAfterClose", testReopenAfterClose},
	{"ReopenAfterCrash", testReopenAfterCrash},
	{"Closed", testClosed},
}
