//go:build unix

package procstat

import (
	"syscall"
	"time"
)

// SelfCPU is the CPU time this process has used, user and system.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
