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

// Usage is what a process has used so far, from /proc/PID/stat.
type Usage struct {
	// User and System are its CPU time in user space and in the kernel
	// (utime and stime, counted in USER_HZ = 100 ticks per second).
	User, System time.Duration
	// MinorFaults counts the page faults it took that needed no disk
	// read (minflt): first touches of fresh memory, and writes to file
	// pages that writeback had made read-only again.
	MinorFaults int64
}

// CPU is User + System.
func (u Usage) CPU() time.Duration { return u.User + u.System }

// Sub returns what was used between o and u.
func (u Usage) Sub(o Usage) Usage {
	return Usage{User: u.User - o.User, System: u.System - o.System, MinorFaults: u.MinorFaults - o.MinorFaults}
}

// Add returns what u and o used together.
func (u Usage) Add(o Usage) Usage {
	return Usage{User: u.User + o.User, System: u.System + o.System, MinorFaults: u.MinorFaults + o.MinorFaults}
}

// Stat reads the usage of process pid; zero if it cannot be read.
func Stat(pid int) Usage {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Usage{}
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields after it start at field 3 (state).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return Usage{}
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return Usage{}
	}
	minflt, err0 := strconv.ParseInt(f[7], 10, 64) // field 10
	ut, err1 := strconv.ParseInt(f[11], 10, 64)    // field 14
	st, err2 := strconv.ParseInt(f[12], 10, 64)    // field 15
	if err0 != nil || err1 != nil || err2 != nil {
		return Usage{}
	}
	const tick = time.Second / 100
	return Usage{User: time.Duration(ut) * tick, System: time.Duration(st) * tick, MinorFaults: minflt}
}

// CPU returns the user + system CPU time of process pid, zero if it
// cannot be read.
func CPU(pid int) time.Duration { return Stat(pid).CPU() }
