//go:build !(linux || darwin || freebsd)

package persist

import (
	"errors"
	"os"
)

// osProbe cannot measure free space on this platform: the guard stays
// off (Space.Free is -1) and only MaxStorage, from file sizes, applies.
type osProbe struct{}

func (osProbe) free(string) (int64, error) {
	return 0, errors.New("free space cannot be measured on this platform")
}

func (osProbe) used(dir string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			n += info.Size()
		}
	}
	return n, nil
}
