package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReloadsLeakNoGoroutines reloads twelve times with changing routes and
// checks the goroutine count does not grow with the number of reloads.
func TestReloadsLeakNoGoroutines(t *testing.T) {
	s := newSink(t, nil)
	cfg := func(i int) string {
		return fmt.Sprintf(`{
	admin {ADMIN}
	persist_config off
	webhooks {
		storage {STORAGE}
		# The sinks listen on loopback, which egress policies deny unless allowed.
		egress default {
			allow 127.0.0.1/32
		}
		route r%d {
			topics t.*
			url %s
		}
		route keep {
			topics t.*
			url %s
			concurrency %d
		}
	}
}
http://127.0.0.1:{PORT} {
	webhook_ingest /events
}
`, i%3, s.URL, s.URL, 1+i%4)
	}
	g := startGateway(t, cfg(0))
	sent := 0
	for i := 1; i <= 2; i++ {
		g.load(cfg(i))
		if code, _ := g.post("/events", `{"type":"t.x","data":1}`); code != 202 {
			t.Fatalf("post: %d", code)
		}
		sent += 2
		// The next reload removes this config's r route, which pauses
		// what it has not delivered yet: wait for it.
		s.waitFor(t, sent, 10*time.Second)
	}
	base := settledGoroutines()
	for i := 3; i <= 12; i++ {
		g.load(cfg(i))
		if code, _ := g.post("/events", `{"type":"t.x","data":1}`); code != 202 {
			t.Fatalf("post: %d", code)
		}
		sent += 2
		s.waitFor(t, sent, 10*time.Second)
	}
	after := settledGoroutines()
	// Three route names rotate, so the dispatcher set is the same size;
	// anything per reload would add at least ten goroutines.
	if after > base+5 {
		t.Errorf("goroutines grew from %d to %d over ten reloads", base, after)
	}
	t.Logf("goroutines: %d after 2 reloads, %d after 12", base, after)
}

// TestSecondProcessOnSameStorageFails runs a second Caddy process on the
// storage directory of a running one: it must refuse to start, naming the
// directory and pointing at `caddy reload`.
func TestSecondProcessOnSameStorageFails(t *testing.T) {
	s := newSink(t, nil)
	g := startGateway(t, baseConfig(s.URL, ""))

	dir := t.TempDir()
	file := filepath.Join(dir, "Caddyfile")
	second := fmt.Sprintf(`{
	admin off
	persist_config off
	webhooks {
		storage %s
	}
}
http://127.0.0.1:%d {
	webhook_ingest /events
}
`, g.storage, freePort(t))
	if err := os.WriteFile(file, []byte(second), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		childEnv+"="+strings.Join([]string{"run", "--config", file, "--adapter", "caddyfile"}, "\x1f"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("second process kept running on a locked storage directory")
	}
	if err == nil {
		t.Fatalf("second process exited 0; output:\n%s", out)
	}
	for _, want := range []string{g.storage, "in use by another process", "caddy reload"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The first one is unharmed.
	if code, ans := g.post("/events", `{"type":"task.created","data":1}`); code != 202 {
		t.Fatalf("first gateway after the refused second: %d %v", code, ans)
	}
	s.waitFor(t, 1, 10*time.Second)
}
