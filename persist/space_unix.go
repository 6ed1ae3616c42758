//go:build linux || darwin || freebsd

package persist

import (
	"os"
	"syscall"
)

// osProbe measures with statfs and the blocks files occupy (sparse files,
// such as Badger's mapped logs, count only what they use).
type osProbe struct{}

func (osProbe) free(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	// Bavail, not Bfree: the blocks a file system keeps for root are a
	// margin for the rest of the machine, not for the outbox.
	return int64(st.Bavail) * int64(st.Bsize), nil
}

func (osProbe) used(dir string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile (a compacted table)
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += int64(st.Blocks) * 512
		} else {
			n += info.Size()
		}
	}
	return n, nil
}
