// Package procstat reads what a process has used, CPU time and memory,
// for the benchmarks and load tests that report it. Memory and the CPU
// time of another process come from /proc (Linux); elsewhere they are
// errors and zeros.
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Memory is a process's resident memory, in bytes, as /proc/PID/status
// gives it: RSS (VmRSS), its peak (VmHWM) and the anonymous part of it
// (RssAnon: RSS less the file pages the process maps).
type Memory struct {
	RSS, Peak, Anon int64
}

// Mem reads the memory of process pid; 0 is this process.
func Mem(pid int) (Memory, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Memory{}, err
	}
	var m Memory
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst, found = &m.RSS, true
		case "VmHWM":
			dst = &m.Peak
		case "RssAnon":
			dst = &m.Anon
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("%s: %s: %v", path, name, err)
		}
		*dst = kb << 10
	}
	if !found {
		return Memory{}, fmt.Errorf("%s: no VmRSS", path)
	}
	return m, nil
}

// CPU returns the user + system CPU time of process pid from
// /proc/PID/stat (utime and stime, in USER_HZ = 100 ticks per second),
// zero if it cannot be read.
func CPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields after it start at field 3 (state).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * (time.Second / 100)
}
