package persist_test

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
	"github.com/hookgate/hookgate/persist/persisttest"
)

// TestBadgerConformance runs the storage contract against the Badger
// outbox.
func TestBadgerConformance(t *testing.T) {
	persisttest.RunConformance(t, persisttest.Harness{
		NewDir: func(t *testing.T) string { return t.TempDir() },
		Open: func(t *testing.T, dir string, opts persist.Options) persist.Store {
			t.Helper()
			opts.Dir = dir
			s, err := persist.Open(opts)
			if err != nil {
				t.Fatalf("Open(%s): %v", dir, err)
			}
			return s
		},
		Crash: crashBadger,
		// Badger's TTLs have one-second granularity.
		ExpiryGrace: 3 * time.Second,
	})
}

// crashBadger leaves what a process killed with SIGKILL leaves: the
// files as the kernel holds them, without Close flushing memtables or
// writing a clean manifest. It copies them while the store is idle (the
// suite crashes it between calls) into a new directory, then releases
// the original store, whose directory lock would stop a reopen in this
// process. TestReopenAfterKill does the real thing with a child process.
// (The copy reads Badger's preallocated 256 MB value log: a few seconds.)
func crashBadger(t *testing.T, s persist.Store, dir string) string {
	t.Helper()
	to := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range entries {
		if ent.IsDir() || ent.Name() == "LOCK" {
			continue
		}
		if err := copyFile(filepath.Join(dir, ent.Name()), filepath.Join(to, ent.Name())); err != nil {
			t.Fatalf("copying %s: %v", ent.Name(), err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("closing the crashed store: %v", err)
	}
	return to
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
