//go:build linux

package persist

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing f's dirty pages out,
// without waiting: the fsync that follows makes them durable, and finds
// them already on their way. A failure is harmless (the fsync writes
// them), so it is not reported.
func startWriteback(f *os.File) {
	_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
