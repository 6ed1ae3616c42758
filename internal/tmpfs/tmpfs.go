//go:build linux

// Package tmpfs mounts small tmpfs file systems for tests that need a
// disk that really fills up.
package tmpfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new directory, unmounted in
// Cleanup. Where mounting is not permitted (not root) the test is skipped
// and says so: it never passes without having run.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			t.Skipf("SKIPPED, NOT TESTED: mounting a %d-byte tmpfs is not permitted here (%v); "+
				"this test needs root (CI runs it as root)", size, err)
		}
		t.Fatalf("mounting a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		// A child process still holding files open would make this fail:
		// cleanups registered later (stopping it) have run by now.
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}
