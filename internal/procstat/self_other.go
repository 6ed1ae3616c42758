//go:build !unix

package procstat

import "time"

// SelfCPU is not measured here.
func SelfCPU() time.Duration { return 0 }
