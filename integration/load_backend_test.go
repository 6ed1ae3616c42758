package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/procstat"
	"github.com/hookgate/hookgate/persist/nats/natstest"
)

// loadBackend is the outbox of the load harness's children: Badger in a
// fresh directory per phase (the default), or a 3-node NATS JetStream
// cluster of child processes with `replicas 3` and a fresh prefix per
// phase. It also measures CPU time (of the Caddy child and, on NATS, of
// the servers) and, with HOOKGATE_LOAD_CPUPROFILE, takes CPU profiles of
// the Caddy child through its admin endpoint.
type loadBackend struct {
	nats    *natstest.ProcessCluster // nil: Badger
	seq     int                      // prefixes handed out
	profDir string                   // HOOKGATE_LOAD_CPUPROFILE
	// contention: HOOKGATE_LOAD_CONTENTION is set; the children record
	// blocking and mutex contention (which costs them CPU).
	contention bool
}

// badgerBackend is the default outbox.
func badgerBackend(b *testing.B) *loadBackend {
	return &loadBackend{profDir: profileDir(b), contention: contentionProfiles(b)}
}

// natsBackend starts a 3-node JetStream cluster as child processes; it
// is killed when the benchmark ends.
func natsBackend(b *testing.B) *loadBackend {
	return &loadBackend{nats: natstest.RunClusterProcesses(b, 3), profDir: profileDir(b), contention: contentionProfiles(b)}
}

// contentionProfiles turns on block and mutex profiling in the children
// (through the variables the webhooks app reads) when
// HOOKGATE_LOAD_CONTENTION and HOOKGATE_LOAD_CPUPROFILE are both set.
func contentionProfiles(b *testing.B) bool {
	if os.Getenv("HOOKGATE_LOAD_CONTENTION") == "" || os.Getenv("HOOKGATE_LOAD_CPUPROFILE") == "" {
		return false
	}
	b.Setenv("HOOKGATE_BLOCK_PROFILE_RATE", "10000") // one per 10 µs blocked
	b.Setenv("HOOKGATE_MUTEX_PROFILE_FRACTION", "10")
	return true
}

func profileDir(b *testing.B) string {
	dir := os.Getenv("HOOKGATE_LOAD_CPUPROFILE")
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatalf("HOOKGATE_LOAD_CPUPROFILE: %v", err)
		}
	}
	return dir
}

// phase names a phase of this backend in the report.
func (be *loadBackend) phase(p string) string {
	if be.nats == nil {
		return p
	}
	return "NATS " + p
}

// key names a benchmark metric of this backend.
func (be *loadBackend) key(k string) string {
	if be.nats == nil || k == "" {
		return k
	}
	return "nats_" + k
}

// storage returns a fresh outbox as the value of the Caddyfile's
// `storage` option, and its directory (Badger only).
func (be *loadBackend) storage(b *testing.B) (spec, dir string) {
	if be.nats == nil {
		dir = b.TempDir()
		return dir, dir
	}
	be.seq++
	return fmt.Sprintf("nats {\n\t\t\tservers %s\n\t\t\treplicas 3\n\t\t\tprefix load%d\n\t\t}",
		strings.Join(be.nats.URLs(), " "), be.seq), ""
}

// diskSize is the size of the outbox: Badger's directory, or the store
// directories of all three servers (every phase's prefix so far).
func (be *loadBackend) diskSize(dir string) int64 {
	if be.nats == nil {
		return dirSize(dir)
	}
	var n int64
	for _, p := range be.nats.Servers {
		n += dirSize(p.StoreDir)
	}
	return n
}

// start runs a Caddy child on this backend and waits until each of its
// sites listens. It returns the child and its admin endpoint, on
// loopback: phases read the outbox's timings from its /metrics and, with
// a profile directory, profiles from its /debug/pprof.
func (be *loadBackend) start(b *testing.B, lc loadConfig) (*child, string) {
	admin := loopbackAddr(b)
	cfg := strings.Replace(loadCaddyfile(lc), "admin off", "admin "+admin, 1)
	c := startChild(b, cfg, lc.ingest)
	for _, addr := range []string{lc.ceiling, lc.passThrough} {
		if addr != "" {
			waitListening(b, c, addr)
		}
	}
	return c, admin
}

// profile fetches profiles of the next secs seconds from a child's admin
// endpoint into the profile directory, in the background: CPU, allocations
// (what was allocated in the window) and, with HOOKGATE_LOAD_CONTENTION,
// blocking and mutex contention. The returned func waits for them.
// Without a profile directory it does nothing.
func (be *loadBackend) profile(b *testing.B, admin, name string, secs int) func() {
	if be.profDir == "" || admin == "" {
		return func() {}
	}
	kinds := map[string]string{"profile": ".pprof", "allocs": ".allocs.pprof"} // endpoint → file suffix
	if be.contention {
		kinds["block"], kinds["mutex"] = ".block.pprof", ".mutex.pprof"
	}
	if os.Getenv("HOOKGATE_LOAD_TRACE") != "" {
		kinds["trace"] = ".trace"
	}
	var wg sync.WaitGroup
	for kind, suffix := range kinds {
		wg.Go(func() {
			secs := secs
			if kind == "trace" {
				// An execution trace of a busy child grows by megabytes
				// a second: two seconds show its scheduling well enough.
				secs = min(secs, 2)
			}
			url := fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", admin, kind, secs)
			be.fetchProfile(b, url, name, suffix, kind, time.Duration(secs+30)*time.Second)
		})
	}
	return wg.Wait
}

// heapProfile saves a heap profile of the child (as of its last GC: none
// is forced) from its admin endpoint into the profile directory. Without
// a profile directory it does nothing.
func (be *loadBackend) heapProfile(b *testing.B, admin, name string) {
	if be.profDir == "" || admin == "" {
		return
	}
	be.fetchProfile(b, fmt.Sprintf("http://%s/debug/pprof/heap", admin), name, ".pprof", "heap", 30*time.Second)
}

// fetchProfile saves the profile at url as the profile directory's file
// for phase name with suffix; what goes wrong is logged, not fatal.
func (be *loadBackend) fetchProfile(b *testing.B, url, name, suffix, kind string, timeout time.Duration) {
	file := filepath.Join(be.profDir, strings.NewReplacer(" ", "_", "/", "_", "+", "_").Replace(be.phase(name))+suffix)
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		b.Logf("%s profile %s: %v", kind, name, err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.Logf("%s profile %s: %d %s", kind, name, resp.StatusCode, body)
		return
	}
	if err := os.WriteFile(file, body, 0o644); err != nil {
		b.Logf("%s profile %s: %v", kind, name, err)
		return
	}
	b.Logf("%s profile of the Caddy child: %s", kind, file)
}

// cpuSample is what the Caddy child, and the NATS servers together, have
// used so far.
type cpuSample struct{ caddy, nats procstat.Usage }

func (be *loadBackend) cpu(c *child) cpuSample {
	s := cpuSample{caddy: procstat.Stat(c.cmd.Process.Pid)}
	if be.nats != nil {
		for _, p := range be.nats.Servers {
			s.nats = s.nats.Add(procstat.Stat(p.Pid()))
		}
	}
	return s
}

func (s cpuSample) sub(o cpuSample) cpuSample {
	return cpuSample{caddy: s.caddy.Sub(o.caddy), nats: s.nats.Sub(o.nats)}
}

// reportCPU adds the CPU used per event (of `what`) over a span of wall
// time: the Caddy child's and, on NATS, the servers'. key is a metric
// name already made by be.key.
func (be *loadBackend) reportCPU(r *loadReport, p, key, what string, d cpuSample, events int64, wall time.Duration) {
	if events <= 0 || wall <= 0 {
		r.note(p, "CPU per "+what, "no events")
		return
	}
	perEv := func(t time.Duration) float64 { return float64(t) / float64(time.Millisecond) / float64(events) }
	r.add(p, "Caddy CPU per "+what+" (ms)", perEv(d.caddy.CPU()), "%.3f", key+"_caddy_cpu_ms")
	// The kernel's share (network, page faults, writeback and fsync of
	// the outbox's memory-mapped logs) is work no Go profile shows.
	r.add(p, "  of which in the kernel (ms)", perEv(d.caddy.System), "%.3f", key+"_caddy_sys_ms")
	r.add(p, "  minor page faults per "+what, float64(d.caddy.MinorFaults)/float64(events), "%.2f", key+"_caddy_faults")
	r.add(p, "Caddy CPU cores busy", d.caddy.CPU().Seconds()/wall.Seconds(), "%.2f", "")
	if be.nats != nil {
		r.add(p, "NATS servers CPU per "+what+" (ms, 3 servers)", perEv(d.nats.CPU()), "%.3f", key+"_nats_cpu_ms")
		r.add(p, "NATS servers CPU cores busy (3 servers)", d.nats.CPU().Seconds()/wall.Seconds(), "%.2f", "")
	}
}
