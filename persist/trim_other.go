//go:build !linux

package persist

import "time"

const trimEvery = 5 * time.Second

// trimMappings is a no-op where /proc/self/maps and MADV_PAGEOUT are not
// available.
func trimMappings(string) error { return nil }
