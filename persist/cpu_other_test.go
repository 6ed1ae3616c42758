//go:build !unix

package persist

import "time"

// processCPU is not measured here.
func processCPU() time.Duration { return 0 }
