package module

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/hookgate/hookgate/persist"
	natsstore "github.com/hookgate/hookgate/persist/nats"
	"github.com/hookgate/hookgate/persist/nats/natstest"
)

// startNATSEngine runs routes on an engine whose outbox is on the NATS
// server at url under prefix.
func startNATSEngine(t *testing.T, url, prefix string, routes map[string]*Route) *testEngine {
	t.Helper()
	e, err := openNATSEngine(natsstore.Config{Servers: []string{url}, Prefix: prefix}, zap.NewNop(), persist.Options{})
	if err != nil {
		t.Fatal(err)
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
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { e.Destruct() }) })
	return &testEngine{Engine: e, t: t, routes: compiled}
}

// idSink counts the POSTs it receives per event id (the envelope's id).
type idSink struct {
	*httptest.Server
	mu   sync.Mutex
	seen map[string]int
}

func newIDSink(t *testing.T, delay time.Duration) *idSink {
	s := &idSink{seen: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var env struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(body, &env)
		time.Sleep(delay)
		s.mu.Lock()
		s.seen[env.ID]++
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *idSink) counts() (distinct, dups int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.seen {
		distinct++
		dups += n - 1
	}
	return distinct, dups
}

// TestSharedStoreAttemptsEachDeliveryOnce: two engines on one NATS
// prefix both see every delivery (their mirrors follow each other's
// ingests); the claims make each delivery attempted by one of them, so
// a sink that never fails gets every event exactly once.
func TestSharedStoreAttemptsEachDeliveryOnce(t *testing.T) {
	srv := natstest.Run(t)
	sink := newIDSink(t, 5*time.Millisecond)
	routes := func() map[string]*Route { return map[string]*Route{"a": {URL: sink.URL, Concurrency: 8}} }
	a := startNATSEngine(t, srv.URL(), "shared", routes())
	b := startNATSEngine(t, srv.URL(), "shared", routes())
	const n = 200
	ids := map[string]bool{}
	for i := 0; i < n; i++ {
		te := a
		if i%2 == 1 {
			te = b
		}
		ids[te.post(fmt.Sprintf(`{"i":%d}`, i))] = true
	}
	waitUntil(t, "every event delivered", func() bool {
		d, _ := sink.counts()
		return d == n
	})
	// Give a duplicate attempt time to show.
	time.Sleep(300 * time.Millisecond)
	distinct, dups := sink.counts()
	if distinct != n || dups != 0 {
		t.Fatalf("sink got %d distinct events and %d duplicates, want %d and none", distinct, dups, n)
	}
	for id := range ids {
		if _, ok := sink.seen[id]; !ok {
			t.Fatalf("event %s never delivered", id)
		}
	}
	// Both engines' pending counts come from the shared store.
	waitUntil(t, "pending counted from the store on both nodes", func() bool {
		pa, err1 := a.store.Pending()
		pb, err2 := b.store.Pending()
		return err1 == nil && err2 == nil && len(pa) == 0 && len(pb) == 0
	})
}

// TestNATSUnreachableAtStart: an outbox on NATS servers that cannot be
// reached fails to open with an error naming them.
func TestNATSUnreachableAtStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	l.Close()
	_, err = openNATSEngine(natsstore.Config{Servers: []string{url}}, zap.NewNop(), persist.Options{})
	if err == nil || !strings.Contains(err.Error(), url) {
		t.Fatalf("opening on an unreachable server: %v, want an error naming %s", err, url)
	}
}

// TestSharedStorePauseHoldsOnEveryNode: a route paused through one node
// holds on the other too; resumed, both deliver again.
func TestSharedStorePauseHoldsOnEveryNode(t *testing.T) {
	srv := natstest.Run(t)
	sink := newIDSink(t, 0)
	routes := func() map[string]*Route { return map[string]*Route{"a": {URL: sink.URL, Concurrency: 2}} }
	a := startNATSEngine(t, srv.URL(), "pause", routes())
	b := startNATSEngine(t, srv.URL(), "pause", routes())
	if err := a.SetPaused("a", true); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the other node sees the pause", func() bool { return b.stats("a").State == statePaused })
	for i := 0; i < 10; i++ {
		b.post(fmt.Sprintf(`{"i":%d}`, i))
	}
	time.Sleep(300 * time.Millisecond)
	if d, _ := sink.counts(); d != 0 {
		t.Fatalf("%d events delivered while the route was paused on the other node", d)
	}
	if err := b.SetPaused("a", false); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "every event delivered after the resume", func() bool {
		d, _ := sink.counts()
		return d == 10
	})
	if st := a.stats("a").State; st != stateActive {
		t.Fatalf("node a after the resume on b: %s, want active", st)
	}
}
