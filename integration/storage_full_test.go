//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/tmpfs"
)

// writeFiller writes a file of n bytes, or until the file system is full
// when n is 0.
func writeFiller(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for written := int64(0); n == 0 || written < n; written += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			if n == 0 && errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("writing %s: %v", path, err)
		}
	}
}

// TestStorageFullKeepsCaddyServing runs Caddy with its outbox on a 64 MiB
// tmpfs and posts events until ingest answers 503 storage_full. Before,
// Badger's memory-mapped value log hit the end of the disk and SIGBUS
// killed Caddy with every site it served. Now: Caddy lives, its other site
// answers, every acknowledged event is delivered, no refused one is (nothing
// half-stored), and once space is freed ingest answers 202 again by itself.
func TestStorageFullKeepsCaddyServing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a separate Caddy process")
	}
	mnt := tmpfs.Mount(t, 64<<20)
	// Freed later to give space back, as an operator would.
	filler := filepath.Join(mnt, "filler")
	writeFiller(t, filler, 16<<20)

	var (
		mu       sync.Mutex
		received = make(map[string]bool)
	)
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received[r.Header.Get("Webhook-Id")] = true
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	ports := freePorts(t, 3)
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	other := fmt.Sprintf("127.0.0.1:%d", ports[1])
	admin := fmt.Sprintf("127.0.0.1:%d", ports[2])
	cfg := fmt.Sprintf(`{
	admin %s
	persist_config off
	webhooks {
		storage %s
		# A 64 MiB disk: the default (256 MiB) is for real ones.
		min_free 12MiB
		egress default {
			allow 127.0.0.1/32
		}
		route sink {
			topics full.*
			url %s/in
			concurrency 8
		}
	}
}
http://%s {
	webhook_ingest /events
}
http://%s {
	respond "ok"
}
`, admin, filepath.Join(mnt, "outbox"), s.URL, addr, other)
	c := startChild(t, cfg, addr)
	defer c.stop(t)

	hc := &http.Client{Timeout: 10 * time.Second}
	post := func(id string) (*http.Response, string, error) {
		body := fmt.Sprintf(`{"type":"full.test","id":%q,"data":{"pad":%q}}`, id, strings.Repeat("x", 1000))
		resp, err := hc.Post("http://"+addr+"/events", "application/json", strings.NewReader(body))
		if err != nil {
			return nil, "", err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b), nil
	}

	var (
		acked, refused sync.Map
		nAcked         atomic.Int64
		firstFull      atomic.Value // the first 503 body and its Retry-After
		wg             sync.WaitGroup
	)
	start := time.Now()
	for p := 0; p < 8; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for n := 0; n < 200_000 && time.Since(start) < 40*time.Second; n++ {
				id := fmt.Sprintf("f-%d-%d", p, n)
				resp, body, err := post(id)
				if err != nil {
					t.Errorf("posting %s: %v (Caddy died?)", id, err)
					return
				}
				switch resp.StatusCode {
				case http.StatusAccepted:
					acked.Store(id, true)
					nAcked.Add(1)
					continue
				case http.StatusServiceUnavailable:
					if strings.Contains(body, `"storage_full"`) {
						refused.Store(id, true)
						firstFull.CompareAndSwap(nil, resp.Header.Get("Retry-After")+" "+body)
						return
					}
				}
				t.Errorf("posting %s: %d %s", id, resp.StatusCode, body)
				return
			}
		}(p)
	}
	wg.Wait()
	if t.Failed() {
		t.Fatalf("log:\n%s", c.tail())
	}
	first, _ := firstFull.Load().(string)
	if first == "" {
		t.Fatalf("no 503 storage_full after %d events in %v; log:\n%s", nAcked.Load(), time.Since(start), c.tail())
	}
	t.Logf("%d events acknowledged in %v before 503 storage_full (%s)", nAcked.Load(), time.Since(start).Round(time.Millisecond), first)
	if retry, _, _ := strings.Cut(first, " "); retry == "" {
		t.Errorf("503 storage_full without Retry-After: %s", first)
	}

	// Caddy is alive, and serves its other site.
	if c.cmd.ProcessState != nil {
		t.Fatalf("Caddy exited; log:\n%s", c.tail())
	}
	resp, err := hc.Get("http://" + other + "/")
	if err != nil {
		t.Fatalf("the other site: %v; log:\n%s", err, c.tail())
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "ok" {
		t.Fatalf("the other site answered %d %q, want 200 ok", resp.StatusCode, b)
	}
	if v := metric(t, admin, "hookgate_storage_full"); v != "1" {
		t.Errorf("hookgate_storage_full = %q while ingest is refused, want 1", v)
	}
	if !strings.Contains(fullLog(t, c), "ingest answers 503 storage_full") {
		t.Errorf("no warning logged when ingest started being refused; log:\n%s", c.tail())
	}
	// Support staff see it where they look: the stats (CLI, console).
	// Badger's compactions free space meanwhile, which may end the
	// episode between two requests: the stats are read right after a
	// refused post, until one pair is caught (posts that are taken fill
	// the disk again).
	// tally posts id and records it as acknowledged (true) or refused.
	tally := func(id string) (bool, string) {
		t.Helper()
		resp, body, err := post(id)
		if err != nil {
			t.Fatalf("posting %s: %v", id, err)
		}
		switch resp.StatusCode {
		case http.StatusAccepted:
			acked.Store(id, true)
			return true, body
		case http.StatusServiceUnavailable:
			refused.Store(id, true)
			return false, body
		}
		t.Fatalf("posting %s: %d %s", id, resp.StatusCode, body)
		return false, body
	}
	seen := false
	for n, began := 0, time.Now(); n < 20_000 && !seen && time.Since(began) < 20*time.Second; n++ {
		if ok, _ := tally(fmt.Sprintf("probe-%d", n)); ok {
			continue
		}
		o := outboxHealth(t, admin)
		seen = (o.State == "full" || o.State == "critical") && strings.Contains(o.Reason, "503 storage_full")
	}
	if !seen {
		t.Errorf("the stats never said the outbox was full right after a refused post")
	}
	// An event stored before is a duplicate, full or not: a client whose
	// first answer was lost learns it is stored.
	if resp, body, err := post("f-0-0"); err != nil {
		t.Errorf("re-posting a stored event while full: %v", err)
	} else if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"duplicate":true`) {
		t.Errorf("re-posting a stored event while full: %d %s; want 200 duplicate", resp.StatusCode, body)
	}

	// Space returns: ingest resumes by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	var resumed time.Duration
	for n := 0; resumed == 0; n++ {
		if ok, body := tally(fmt.Sprintf("after-%d", n)); ok {
			resumed = time.Since(freed)
		} else {
			if time.Since(freed) > 20*time.Second {
				t.Fatalf("ingest still refused 20s after 16 MiB were freed: %s; log:\n%s", body, c.tail())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("ingest resumed %v after the filler was deleted", resumed.Round(time.Millisecond))

	// Every acknowledged event is delivered; no refused one ever is.
	missing := func() (n int, example string) {
		mu.Lock()
		defer mu.Unlock()
		acked.Range(func(k, _ any) bool {
			if !received[k.(string)] {
				n++
				example = k.(string)
			}
			return true
		})
		return n, example
	}
	deadline := time.Now().Add(40 * time.Second)
	for {
		n, example := missing()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged events never delivered, e.g. %s; log:\n%s", n, example, c.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	refused.Range(func(k, _ any) bool {
		if received[k.(string)] {
			t.Errorf("event %s was refused with 503 but delivered: half-stored", k)
		}
		return true
	})
	mu.Unlock()
	if v := metric(t, admin, "hookgate_storage_full"); v != "0" {
		t.Errorf("hookgate_storage_full = %q after ingest resumed, want 0", v)
	}
	if o := outboxHealth(t, admin); o.State != "" {
		t.Errorf("stats outbox %+v after ingest resumed, want none", o)
	}
	full := fullLog(t, c)
	if !strings.Contains(full, "ingest resumed") {
		t.Errorf("no line logged when ingest resumed")
	}
	for _, line := range strings.Split(full, "\n") {
		if strings.Contains(line, "outbox storage") {
			t.Log(line)
		}
	}
}

// TestStartOnFullDiskFails starts Caddy with its outbox on a tmpfs with no
// space left: it must exit with an error naming the directory and
// min_free, not crash with SIGBUS.
func TestStartOnFullDiskFails(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a separate Caddy process")
	}
	mnt := tmpfs.Mount(t, 8<<20)
	outbox := filepath.Join(mnt, "outbox")
	if err := os.Mkdir(outbox, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFiller(t, filepath.Join(mnt, "filler"), 0)

	dir := t.TempDir()
	file := filepath.Join(dir, "Caddyfile")
	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
	webhooks {
		storage %s
		min_free 4MiB
	}
}
http://127.0.0.1:%d {
	webhook_ingest /events
}
`, outbox, freePort(t))
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(),
		childEnv+"="+strings.Join([]string{"run", "--config", file, "--adapter", "caddyfile"}, "\x1f"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("Caddy on a full disk: %v, want a non-zero exit; output:\n%s", err, out)
	}
	log := string(out)
	if strings.Contains(log, "SIGBUS") || strings.Contains(log, "fatal error") {
		t.Fatalf("Caddy crashed instead of failing cleanly:\n%s", log)
	}
	for _, want := range []string{outbox + " cannot open", "free", "min_free, which is 4.0 MiB"} {
		if !strings.Contains(log, want) {
			t.Errorf("output does not say %q:\n%s", want, log)
		}
	}
	t.Logf("exit %d: %s", exit.ExitCode(), lastLine(log))
}

// metric returns the value of an unlabelled metric from Caddy's admin
// endpoint, or "" if it is not there.
// outboxHealth is the outbox part of the admin API's stats (zero when
// the outbox takes work).
func outboxHealth(t *testing.T, admin string) (o struct{ State, Reason string }) {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/webhooks/stats")
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	defer resp.Body.Close()
	var ans struct {
		Outbox *struct{ State, Reason string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		t.Fatalf("stats: %v", err)
	}
	if ans.Outbox != nil {
		o = *ans.Outbox
	}
	return o
}

func metric(t *testing.T, admin, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// fullLog is the child's whole log (tail keeps only its end, which
// delivery lines fill).
func fullLog(t *testing.T, c *child) string {
	t.Helper()
	b, err := os.ReadFile(c.log)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
