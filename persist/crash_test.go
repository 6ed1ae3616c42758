package persist

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// childDirEnv names the directory TestChildWriter writes to; the test is
// a no-op without it.
const childDirEnv = "PERSIST_CHILD_DIR"

// TestChildWriter is the child half of TestReopenAfterKill: it ingests in
// a loop from several goroutines and prints the id of every acknowledged
// event on its own line, until it is killed.
func TestChildWriter(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		t.Skip("only runs as the child of TestReopenAfterKill")
	}
	s, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: open: %v\n", err)
		os.Exit(2)
	}
	var out sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("k%d-%07d", g, i)
				in := oneIngest(id, t0.Add(time.Duration(i)*time.Millisecond), "r")
				in.Event.Data = []byte(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)
				if _, err := s.Ingest(context.Background(), []Ingest{in}); err != nil {
					fmt.Fprintf(os.Stderr, "child: ingest %s: %v\n", id, err)
					os.Exit(3)
				}
				// Only now is it acknowledged. One write per line keeps
				// lines whole on the pipe.
				out.Lock()
				_, _ = os.Stdout.WriteString(id + "\n")
				out.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestReopenAfterKill kills a writing process with SIGKILL and checks that
// everything it acknowledged is still there, pending, after reopening.
func TestReopenAfterKill(t *testing.T) {
	if os.Getenv(childDirEnv) != "" {
		t.Skip("running as the child")
	}
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildWriter$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	killed := false
	kill := func() {
		if !killed {
			killed = true
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Errorf("kill %d: %v", pid, err)
			}
		}
	}
	defer kill()

	const minAcked = 500
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	acked := map[string]bool{}
	timeout := time.After(30 * time.Second)
	for len(acked) < minAcked {
		select {
		case line, ok := <-lines:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("child exited after %d acks; stderr:\n%s", len(acked), stderr.String())
			}
			acked[line] = true
		case <-timeout:
			t.Fatalf("child acked only %d ingests in 30s; stderr:\n%s", len(acked), stderr.String())
		}
	}
	kill()
	// Lines already in the pipe were acknowledged before the kill.
	for line := range lines {
		acked[line] = true
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v; stderr:\n%s", err, stderr.String())
	}

	s := openStore(t, Options{Dir: dir})
	pending := mustPending(t, s)
	if pending["r"] < len(acked) {
		t.Fatalf("after kill -9: %d pending, want at least the %d acknowledged", pending["r"], len(acked))
	}
	refs, _ := mustDue(t, s, "r", t0.Add(24*time.Hour), pending["r"]+1, nil)
	inReady := make(map[string]bool, len(refs))
	for _, r := range refs {
		inReady[r.ID] = true
	}
	var missing []string
	for id := range acked {
		if !strings.HasPrefix(id, "k") {
			t.Fatalf("child printed %q, not an id", id)
		}
		d, err := s.Delivery(id + "/r")
		switch {
		case err != nil:
			missing = append(missing, id+": "+err.Error())
		case d.Status != StatusPending || d.EventID != id:
			missing = append(missing, fmt.Sprintf("%s: %+v", id, d))
		case !inReady[id+"/r"]:
			missing = append(missing, id+": not in the ready index")
		}
		if _, err := s.Event(id); err != nil {
			missing = append(missing, id+": event: "+err.Error())
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged ingests lost after kill -9, e.g. %v", len(missing), len(acked), missing[:min(5, len(missing))])
	}
	t.Logf("%d acknowledged before SIGKILL, %d pending after reopen", len(acked), pending["r"])
}
