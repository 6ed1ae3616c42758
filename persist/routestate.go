package persist

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// RouteState is what the outbox remembers about a route beyond its
// deliveries: operator decisions and checks that must survive restarts.
type RouteState struct {
	// Paused holds the route's deliveries: they queue, nothing is sent.
	Paused bool `json:"paused,omitempty"`
	// PausedReason says who or what paused it (an operator, a 410 Gone).
	PausedReason string `json:"paused_reason,omitempty"`
	// VerifiedURL is the URL template whose endpoint last passed the
	// verify_endpoint check; a route whose URL differs checks again.
	VerifiedURL string `json:"verified_url,omitempty"`
	// Circuit is the route's circuit breaker while it is open (or half
	// open); the zero value, a closed circuit, is not stored. It is
	// written when the circuit opens, reopens after a failed probe and
	// closes, so that a restart neither forgets an endpoint that is down
	// nor spends a fresh round of attempts on it.
	Circuit CircuitState `json:"circuit,omitzero"`
}

// CircuitState is an open circuit as the outbox keeps it.
type CircuitState struct {
	// OpenedAt is when the circuit last opened or reopened, in unix
	// nanoseconds (an integer, so that states compare with ==).
	OpenedAt int64 `json:"opened_at,omitempty"`
	// Cooldown is how long it stays open from OpenedAt before one probe
	// may go; it doubles with each failed probe.
	Cooldown time.Duration `json:"cooldown_ns,omitempty"`
	// Failures counts the consecutive failed attempts since the circuit
	// was last closed: those that opened it, then each failed probe.
	Failures int `json:"failures,omitempty"`
}

// Open reports whether c records an open circuit.
func (c CircuitState) Open() bool { return c.OpenedAt != 0 }

func routeStateKey(route string) []byte { return simpleKey(pRouteSt, route) }

// SetRouteState implements Store. The write is a transaction of its own,
// synced before it returns: a pause must hold after a crash.
func (s *Badger) SetRouteState(route string, st RouteState) error {
	if err := checkRoute(route); err != nil {
		return err
	}
	if !s.beginRead() {
		return ErrClosed
	}
	defer s.reads.Done()
	err := s.db.Update(func(txn *badger.Txn) error {
		if st == (RouteState{}) {
			return txn.Delete(routeStateKey(route))
		}
		val, err := encodeJSON(&st)
		if err != nil {
			return err
		}
		return txn.Set(routeStateKey(route), val)
	})
	if errors.Is(err, badger.ErrDBClosed) {
		err = ErrClosed
	}
	if err != nil {
		return err
	}
	return s.durable()
}

// RouteStates implements Store.
func (s *Badger) RouteStates() (map[string]RouteState, error) {
	out := make(map[string]RouteState)
	err := s.view(func(txn *badger.Txn) error {
		prefix := []byte{pRouteSt, '|'}
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			var st RouteState
			if err := item.Value(func(v []byte) error { return decodeJSON(v, &st) }); err != nil {
				return fmt.Errorf("route state %s: %w", item.Key()[2:], err)
			}
			out[string(item.Key()[2:])] = st
		}
		return nil
	})
	return out, err
}

// DeadCounts implements Store: it counts the dead index (x|) per route,
// keys only, as Pending counts the ready index. Expired entries are not
// seen.
func (s *Badger) DeadCounts(taken func()) (map[string]int, error) {
	counts := make(map[string]int)
	err := s.view(func(txn *badger.Txn) error {
		// The read transaction's snapshot is fixed when it begins.
		if taken != nil {
			taken()
		}
		return countByRoute(txn, pDead, counts, nil)
	})
	return counts, err
}

// countByRoute adds to counts the entries per route of the index with
// prefix byte p (keys p|len route …), those for which keep (if not nil)
// is true of the value.
func countByRoute(txn *badger.Txn, p byte, counts map[string]int, keep func(val []byte) bool) error {
	prefix := []byte{p, '|'}
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = prefix
	it := txn.NewIterator(opts)
	defer it.Close()
	var (
		last      []byte
		lastRoute string
	)
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		k := item.Key()
		if len(k) < 3 || len(k) < 3+int(k[2]) {
			continue
		}
		if keep != nil {
			ok := false
			if err := item.Value(func(v []byte) error { ok = keep(v); return nil }); err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		r := k[3 : 3+int(k[2])]
		if string(r) != string(last) {
			last = append(last[:0], r...)
			lastRoute = string(r)
		}
		counts[lastRoute]++
	}
	return nil
}
