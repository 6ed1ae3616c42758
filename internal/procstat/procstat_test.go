package procstat

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// This process's own figures are read, and grow as it works.
func TestSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	m, err := Mem(0)
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.Anon <= 0 || m.Peak < m.RSS {
		t.Fatalf("memory %+v: want RSS and RssAnon above zero, VmHWM at least VmRSS", m)
	}
	if byPID, err := Mem(os.Getpid()); err != nil || byPID.RSS <= 0 {
		t.Fatalf("Mem(own pid) = %+v, %v", byPID, err)
	}
	self0, proc0, use0 := SelfCPU(), CPU(os.Getpid()), Stat(os.Getpid())
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	// Fresh pages, each touched once: a minor fault apiece.
	fresh := make([]byte, 8<<20)
	for i := 0; i < len(fresh); i += 4096 {
		fresh[i] = 1
	}
	if d := SelfCPU() - self0; d < 20*time.Millisecond {
		t.Errorf("SelfCPU grew by %v over 50 ms of spinning", d)
	}
	if d := CPU(os.Getpid()) - proc0; d <= 0 {
		t.Errorf("CPU(own pid) grew by %v over 50 ms of spinning", d)
	}
	if d := Stat(os.Getpid()).Sub(use0); d.User <= 0 || d.MinorFaults <= 0 || d.CPU() != d.User+d.System {
		t.Errorf("Stat(own pid) over 50 ms of spinning and 8 MiB touched: %+v", d)
	}
	if u := Stat(1 << 30); u != (Usage{}) {
		t.Errorf("Stat of a process that does not exist: %+v, want zero", u)
	}
	if _, err := Mem(1 << 30); err == nil {
		t.Error("Mem of a process that does not exist: no error")
	}
}
