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
	self0, proc0 := SelfCPU(), CPU(os.Getpid())
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	if d := SelfCPU() - self0; d < 20*time.Millisecond {
		t.Errorf("SelfCPU grew by %v over 50 ms of spinning", d)
	}
	if d := CPU(os.Getpid()) - proc0; d <= 0 {
		t.Errorf("CPU(own pid) grew by %v over 50 ms of spinning", d)
	}
	if _, err := Mem(1 << 30); err == nil {
		t.Error("Mem of a process that does not exist: no error")
	}
}
