package natsstore_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/hookgate/hookgate/persist"
	natsstore "github.com/hookgate/hookgate/persist/nats"
	"github.com/hookgate/hookgate/persist/nats/natstest"
	"github.com/hookgate/hookgate/persist/persisttest"
)

var prefixes atomic.Int64

// TestNATSConformance runs the storage contract against the NATS outbox
// on a real in-process JetStream server. Each subtest gets its own
// prefix (its own streams and buckets).
func TestNATSConformance(t *testing.T) {
	srv := natstest.Run(t)
	persisttest.RunConformance(t, persisttest.Harness{
		NewDir: func(t *testing.T) string { return fmt.Sprintf("t%d", prefixes.Add(1)) },
		Open: func(t *testing.T, prefix string, opts persist.Options) persist.Store {
			t.Helper()
			s, err := natsstore.Open(natsstore.Config{Servers: []string{srv.URL()}, Prefix: prefix}, opts)
			if err != nil {
				t.Fatalf("Open(%s): %v", prefix, err)
			}
			return s
		},
		// A crash: the connection dropped without Close; the prefix
		// holds what the server acknowledged.
		Crash: func(t *testing.T, s persist.Store, prefix string) string {
			s.(*natsstore.Store).Abandon()
			return prefix
		},
	})
}
