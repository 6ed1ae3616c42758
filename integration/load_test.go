package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// BenchmarkLoad is the load harness: the real Caddy with hookgate in a
// child process, load generators and sinks in this process, all on
// 127.0.0.1. It measures, with 1 KB events:
//
//  1. the ceiling: the same Caddy answering `respond 202` on the ingest
//     path, 64 keep-alive connections;
//  2. ingest of single events (202 only after fsync), 64 connections,
//     and that as a fraction of the ceiling;
//     2a. the pass-through: the same load (64 connections, single 1 KB
//     events, same warm-up and window) to a site of the Caddy child of
//     phase 2b that forwards every request to a sink like 2b's, in
//     memory, storing nothing: stock Caddy's `reverse_proxy` with the
//     path rewritten to the sink's, keeping up to 64 idle connections to
//     it (as many as 2b's route delivers on). That is the non-durable
//     HTTP-in/HTTP-out gateway 2b is held against. It runs once, in the
//     first phase 2b of the run (Badger's, or NATS's with
//     HOOKGATE_LOAD_NATS=only);
//     2b. the same ingest while the route delivers to a live sink: the
//     sustained rate (the lower of ingest 202s/s and deliveries/s) and
//     that as a fraction of 2a's rate (the lower of its answers/s and the
//     sink's receipts/s). 2a and 2b also report the machine's idle CPU
//     over the window (/proc/stat, all cores), which tells a CPU-bound
//     run (near 0) from one bound by latency or fsync; 2b also reports,
//     from the child's hookgate_outbox_* metrics, how long an ingest
//     waited for its commit and for a sync round, how long a round took
//     and how many ingests it made durable (Badger only);
//  3. ingest of batches of 100, 64 connections;
//  4. deliveries/s to a sink answering 200: a backlog is ingested while
//     the route is held (see blackHole), then Caddy restarts with the
//     route pointing at the sink, concurrency 64;
//  5. end-to-end latency (ingest → sink) at a steady HOOKGATE_LOAD_RATE
//     events/s (default 2,000; 0 skips);
//  6. RSS and anonymous memory with HOOKGATE_LOAD_BACKLOG pending
//     deliveries (default 1,000,000; 0 skips), the time from restart to
//     the first delivery, and memory after the backlog is partly drained;
//  7. disk per retained delivered event (Badger only): HOOKGATE_LOAD_DISK
//     events (default 200,000; 0 skips) ingested in batches of 1000 to a
//     route delivering to a live sink, every one delivered, then the
//     outbox's size over the event count right after the drain, after
//     HOOKGATE_LOAD_DISK_SETTLE of rest (default twice
//     HOOKGATE_LOAD_GC_INTERVAL) and after Caddy stops. Sizes are the
//     blocks allocated on disk (what du counts: Badger's memory-mapped
//     files are sparse) and, beside them, the files' lengths.
//
// The report ends with the targets of the throughput and footprint work,
// each beside the figure of this run it is judged on, and whether it is
// met; the throughput targets are ratios to other phases of the same run,
// so a slow or busy machine moves both sides.
//
// Run it as
//
//	go test ./integration -run '^$' -bench BenchmarkLoad -benchtime 1x -timeout 30m
//
// Other knobs: HOOKGATE_LOAD_WINDOW (measured window of phases 1–3, 2a
// and 2b, default 5s, after 1s of warm-up), HOOKGATE_LOAD_DELIVER (events
// of phase 4, default 100000), HOOKGATE_LOAD_RULE_ROUTES (routes with a
// never-matching rule added to phases 1-3, default 0),
// HOOKGATE_LOAD_GC_INTERVAL (phase 7's child runs with the webhooks app's
// `gc_interval` set to it, default 20s, so value-log GC runs a few times
// within the phase, as it would at steady state), HOOKGATE_LOAD_OTLP (any value:
// tracing on, exporting to a local OTLP receiver),
// HOOKGATE_LOAD_CPUPROFILE (a directory: CPU and allocation profiles of
// the Caddy child during the windows of phases 2, 3 and 2b and 4's drain,
// and a heap profile with phase 6's backlog pending, taken through its
// admin endpoint; with HOOKGATE_LOAD_CONTENTION also blocking and mutex
// profiles, which cost the child some CPU; with HOOKGATE_LOAD_TRACE an
// execution trace of the first 2 s of each window, for `go tool trace`:
// how long goroutines waited to run, and on what), HOOKGATE_LOAD_PHASES (a
// comma-separated list of the phases to run, e.g. "6" or "3,6": "1", "2"
// and "3" each run phases 1–3, "2b" runs 2a and 2b; default: all).
// Phases 2, 3, 2a, 2b and 4 report the Caddy child's CPU time per event,
// the kernel's part of it and its minor page faults per event (from
// /proc/PID/stat). A Go profile shows the kernel's work for the outbox's
// memory-mapped files (page faults, write-back, fsync) only as time in
// syscalls and in memmove; `perf record -g -p PID` shows what it is.
//
// HOOKGATE_LOAD_NATS=1 runs phases 2–5 again after the Badger phases, on
// a 3-node NATS JetStream cluster of child processes (`replicas 3`, a
// fresh prefix per phase; phase 4 with HOOKGATE_LOAD_NATS_DELIVER events,
// default HOOKGATE_LOAD_DELIVER; phase 5 at HOOKGATE_LOAD_NATS_RATE
// events/s, default 1000); its phase 2b is held against Badger's
// pass-through (2a), run once. HOOKGATE_LOAD_NATS=only runs those alone.
// Phases 2a, 2b and 4 report CPU time per event of the Caddy child and,
// on NATS, of the three servers (from /proc/PID/stat). Figures are
// reported, never asserted; lost acknowledged events fail the run.
func BenchmarkLoad(b *testing.B) {
	r := &loadReport{b: b}
	defer r.finish()
	window := envDuration(b, "HOOKGATE_LOAD_WINDOW", 5*time.Second)
	deliverN := envInt(b, "HOOKGATE_LOAD_DELIVER", 100_000)
	backlogN := envInt(b, "HOOKGATE_LOAD_BACKLOG", 1_000_000)
	diskN := envInt(b, "HOOKGATE_LOAD_DISK", 200_000)
	gcInterval := envDuration(b, "HOOKGATE_LOAD_GC_INTERVAL", 20*time.Second)
	settle := envDuration(b, "HOOKGATE_LOAD_DISK_SETTLE", 2*gcInterval)
	tg := loadTargets{rate: envInt(b, "HOOKGATE_LOAD_RATE", 2000), backlog: backlogN, disk: diskN}

	if os.Getenv("HOOKGATE_LOAD_OTLP") != "" {
		// Tracing on: children export every span to a local OTLP/HTTP
		// receiver that counts and discards them.
		spans := otlpSink(b)
		defer func() { b.Logf("spans exported to the local OTLP receiver: %d", spans.Load()) }()
	}
	rules := envInt(b, "HOOKGATE_LOAD_RULE_ROUTES", 0)
	onNATS := os.Getenv("HOOKGATE_LOAD_NATS")
	var pass passThrough // phase 2a, run once
	phase := loadPhases(b)
	if onNATS != "only" {
		be := badgerBackend(b)
		if phase("1") || phase("2") || phase("3") {
			loadIngest(b, r, be, time.Second, window, rules)
		}
		if phase("2b") {
			loadMixed(b, r, be, time.Second, window, &pass)
		}
		if tg.rate > 0 && phase("5") {
			loadLatency(b, r, be, tg.rate, time.Second, 10*time.Second)
		}
		if deliverN > 0 && phase("4") {
			loadBacklog(b, r, be, "4 deliver backlog", "deliver", deliverN, true)
		}
		if backlogN > 0 && phase("6") {
			loadBacklog(b, r, be, "6 backlog+restart", "backlog", backlogN, false)
		}
		if diskN > 0 && phase("7") {
			loadDisk(b, r, be, diskN, gcInterval, settle)
		}
	}
	if onNATS != "" {
		be := natsBackend(b)
		if phase("1") || phase("2") || phase("3") {
			loadIngest(b, r, be, time.Second, window, rules)
		}
		if phase("2b") {
			loadMixed(b, r, be, time.Second, window, &pass)
		}
		tg.natsRate = envInt(b, "HOOKGATE_LOAD_NATS_RATE", 1000)
		if tg.natsRate > 0 && phase("5") {
			loadLatency(b, r, be, tg.natsRate, time.Second, 10*time.Second)
		}
		if n := envInt(b, "HOOKGATE_LOAD_NATS_DELIVER", deliverN); n > 0 && phase("4") {
			loadBacklog(b, r, be, "4 deliver backlog", "deliver", n, true)
		}
	}
	tg.report(r, onNATS != "only", onNATS != "")
}

// loadPhases reads HOOKGATE_LOAD_PHASES: the returned func says whether
// a phase is to run.
func loadPhases(b *testing.B) func(string) bool {
	v := strings.TrimSpace(os.Getenv("HOOKGATE_LOAD_PHASES"))
	if v == "" {
		return func(string) bool { return true }
	}
	on := map[string]bool{}
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		switch p {
		case "1", "2", "2b", "3", "4", "5", "6", "7":
			on[p] = true
		default:
			b.Fatalf("HOOKGATE_LOAD_PHASES: %q is not a phase (want a comma-separated list of 1, 2, 2b, 3, 4, 5, 6, 7)", p)
		}
	}
	return func(p string) bool { return on[p] }
}

// otlpSink starts an OTLP/HTTP trace receiver on loopback that counts the
// spans it is sent, and points the OTEL_* variables the children inherit at
// it.
func otlpSink(b *testing.B) *atomic.Int64 {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if proto.Unmarshal(body, &req) == nil {
			for _, rs := range req.ResourceSpans {
				for _, ss := range rs.ScopeSpans {
					n.Add(int64(len(ss.Spans)))
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	b.Cleanup(srv.Close)
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	b.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	return &n
}

// loadConns is the number of concurrent connections of phases 1–3.
const loadConns = 64

// loadRoute is the one route of the harness's config.
type loadRoute struct {
	url         string
	concurrency int
	timeout     string
	schedule    string
	// rules adds that many more routes for load.*, each with a rule that
	// is evaluated for every event and never matches (n is never
	// negative), so they cost rule evaluation but store nothing.
	rules int
}

// ruleRoutes is the Caddyfile of loadRoute.rules.
func ruleRoutes(rt loadRoute) string {
	var sb strings.Builder
	for i := 0; i < rt.rules; i++ {
		fmt.Fprintf(&sb, "\t\troute rule%d {\n\t\t\ttopics load.*\n\t\t\turl %s\n\t\t\twhen `event.data.n == -%d && event.type == \"load.single\"`\n\t\t}\n", i, rt.url, i+1)
	}
	return sb.String()
}

// heldRoute points at a black hole: one attempt hangs, the rest stays
// pending and due. A failed attempt (when the hole closes at stop) is
// retried after 1s, so it is not stranded for the next run.
func heldRoute(h *blackHole) loadRoute {
	return loadRoute{url: h.URL + "/hold", concurrency: 1, timeout: "1h", schedule: "1s"}
}

// liveRoute points at a sink with concurrency 64.
func liveRoute(s *fastSink) loadRoute {
	return loadRoute{url: s.URL + "/in", concurrency: 64, timeout: "10s", schedule: "1s 1s 5s 30s"}
}

// loadConfig is what a child of the harness serves.
type loadConfig struct {
	storage string // the webhooks app's `storage` option
	ingest  string // address of the site with the ingest endpoint /events
	// ceiling is the address of a site that answers every request with a
	// bare 202; empty: none.
	ceiling string
	// passThrough is the address of a site that forwards every request
	// to passTo (a sink's URL) at the path /in, with stock Caddy's
	// reverse_proxy; empty: none.
	passThrough, passTo string
	// gcInterval is the webhooks app's value-log GC interval; zero: the
	// default (the option is not written).
	gcInterval time.Duration
	route      loadRoute
}

// loadCaddyfile is the child's config: the webhooks app with one route
// for `load.*`, the ingest endpoint and the optional ceiling and
// pass-through sites.
func loadCaddyfile(lc loadConfig) string {
	rt := lc.route
	var sb strings.Builder
	gc := ""
	if lc.gcInterval > 0 {
		gc = fmt.Sprintf("\t\tgc_interval %s\n", lc.gcInterval)
	}
	fmt.Fprintf(&sb, `{
	admin off
	persist_config off
	log {
		level ERROR
	}
	webhooks {
		storage %s
%s		# The sinks listen on loopback, which egress policies deny unless allowed.
		egress default {
			allow 127.0.0.1/32
		}
		route load {
			topics load.*
			url %s
			concurrency %d
			timeout %s
			retry {
				schedule %s
			}
		}
%s	}
}

http://%s {
	webhook_ingest /events {
		max_body 4MiB
		max_batch 1000
	}
}
`, lc.storage, gc, rt.url, rt.concurrency, rt.timeout, rt.schedule, ruleRoutes(rt), lc.ingest)
	if lc.ceiling != "" {
		fmt.Fprintf(&sb, `
http://%s {
	respond /events 202
}
`, lc.ceiling)
	}
	if lc.passThrough != "" {
		// As many idle connections to the sink as the route delivers on
		// (Caddy keeps 32 by default).
		fmt.Fprintf(&sb, `
http://%s {
	rewrite * /in
	reverse_proxy %s {
		transport http {
			keepalive_idle_conns_per_host 64
		}
	}
}
`, lc.passThrough, strings.TrimPrefix(lc.passTo, "http://"))
	}
	return sb.String()
}

func loopbackAddr(t testing.TB) string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }

func is202(st int) bool { return st == 202 }

// reportLoop adds the rate, latency and failure rows of a closed-loop run.
func reportLoop(b *testing.B, r *loadReport, c *child, phase, key string, s *loadStats, perReq int) {
	if perReq == 1 {
		r.add(phase, "requests/s", s.rate(), "%.0f", key+"_req/s")
	} else {
		r.add(phase, "requests/s", s.rate(), "%.0f", key+"_req/s")
		r.add(phase, "events/s", s.rate()*float64(perReq), "%.0f", key+"_ev/s")
	}
	r.add(phase, "p50 per request (ms)", ms(pct(s.lat, 0.50)), "%.2f", key+"_p50_ms")
	r.add(phase, "p99 per request (ms)", ms(pct(s.lat, 0.99)), "%.2f", key+"_p99_ms")
	r.note(phase, "failed requests (whole run)", s.tally.String())
	if s.tally.failures() > 0 {
		b.Logf("%s: failures %s; child log tail:\n%s", phase, s.tally, c.tail())
	}
}

// loadIngest runs phases 1–3 on one child whose route is held, so the
// figures are ingest alone. Phase 1 (the ceiling) runs on Badger only: it
// does not touch the outbox.
func loadIngest(b *testing.B, r *loadReport, be *loadBackend, warm, window time.Duration, rules int) {
	bh := newBlackHole(b)
	ingestAddr, ceilAddr := loopbackAddr(b), loopbackAddr(b)
	if be.nats != nil {
		ceilAddr = ""
	}
	rt := heldRoute(bh)
	rt.rules = rules
	storage, _ := be.storage(b)
	c, admin := be.start(b, loadConfig{storage: storage, ingest: ingestAddr, ceiling: ceilAddr, route: rt})
	client := newLoadClient(loadConns)
	defer client.CloseIdleConnections()

	single := make([][]byte, loadConns)
	for w := range single {
		single[w] = eventBody("load.single", w, 0, 0, eventSize)
	}
	batch := batchBody("load.batch", 100, eventSize)
	// run measures one closed-loop phase and the Caddy child's CPU time
	// over its window, with a CPU profile named prof (if profiling).
	run := func(url, prof string, body func(w, i int) []byte) (*loadStats, cpuSample) {
		from := time.Now().Add(warm)
		to := from.Add(window)
		profiled := func() {}
		sampled := sampleWindow(be, c, nil, "", from, to, func() {
			if prof != "" {
				profiled = be.profile(b, admin, prof, max(int(window.Seconds()), 1))
			}
		})
		st := closedLoop(client, url, loadConns, from, to, body, is202)
		w0, w1 := sampled()
		profiled()
		return st, w1.cpu.sub(w0.cpu)
	}
	singleBody := func(w, _ int) []byte { return single[w] }

	var ceil *loadStats
	if ceilAddr != "" {
		ceil, _ = run("http://"+ceilAddr+"/events", "", singleBody)
		p := "1 ceiling (respond 202)"
		r.note(p, "setup", fmt.Sprintf("%d conns, %d B bodies, %s after %s warm-up", loadConns, len(single[0]), window, warm))
		reportLoop(b, r, c, p, "ceiling", ceil, 1)
	}

	ing, cpu := run("http://"+ingestAddr+"/events", "2 ingest single", singleBody)
	p := be.phase("2 ingest single events")
	r.note(p, "setup", fmt.Sprintf("%d conns, %d B events, route held (ingest only), %d more routes with a rule", loadConns, len(single[0]), rules))
	reportLoop(b, r, c, p, be.key("single"), ing, 1)
	be.reportCPU(r, p, be.key("single"), "event ingested", cpu, ing.reqs, window)
	if ceil != nil && ceil.rate() > 0 {
		r.add(p, "fraction of ceiling", ing.rate()/ceil.rate(), "%.3f", "single_of_ceiling")
	}

	bat, cpu := run("http://"+ingestAddr+"/events", "3 ingest batches", func(int, int) []byte { return batch })
	p = be.phase("3 ingest batches of 100")
	r.note(p, "setup", fmt.Sprintf("%d conns, %d B bodies, route held (ingest only)", loadConns, len(batch)))
	reportLoop(b, r, c, p, be.key("batch100"), bat, 100)
	be.reportCPU(r, p, be.key("batch100"), "event ingested", cpu, bat.reqs*100, window)

	mem := childMem(c)
	r.add(be.phase("1-3 child memory"), "RSS after phases 1-3 (MiB)", mib(mem.RSS), "%.0f", "")
	r.add(be.phase("1-3 child memory"), "peak RSS (MiB)", mib(mem.Peak), "%.0f", "")
	stopHeld(b, c, bh)
}

// loadBacklog ingests n events in batches of 1000 while the route is
// held, stops Caddy, starts it again with the route pointing at a live
// sink (concurrency 64) and measures the restart, the time to the first
// delivery and the drain. With full it waits for every event (phase 4);
// otherwise it drains for at most 30s or half the backlog and measures
// memory (phase 6).
func loadBacklog(b *testing.B, r *loadReport, be *loadBackend, p, key string, n int, full bool) {
	const (
		posters   = 4
		batchSize = 1000
	)
	p, key = be.phase(p), be.key(key)
	bh := newBlackHole(b)
	storage, dir := be.storage(b)
	addr := loopbackAddr(b)
	c1, admin1 := be.start(b, loadConfig{storage: storage, ingest: addr, route: heldRoute(bh)})
	client := newLoadClient(posters)
	defer client.CloseIdleConnections()
	start := time.Now()
	cpu0 := be.cpu(c1)
	in := ingestBatches(client, "http://"+addr+"/events", "load.backlog", n, posters, batchSize)
	ingestDur := time.Since(start)
	ingestCPU := be.cpu(c1).sub(cpu0)
	want, lat, t := in.acked, in.lat, in.tally
	r.note(p, "setup", fmt.Sprintf("%d events of %d B in batches of %d, %d conns, route held; restart with route → sink, concurrency 64",
		n, eventSize, batchSize, posters))
	r.add(p, "ingest events/s (batches of 1000)", float64(want)/ingestDur.Seconds(), "%.0f", key+"_ingest_ev/s")
	r.add(p, "ingest p50 per batch (ms)", ms(pct(lat, 0.50)), "%.1f", "")
	r.add(p, "ingest p99 per batch (ms)", ms(pct(lat, 0.99)), "%.1f", "")
	be.reportCPU(r, p, key+"_ingest", "event ingested", ingestCPU, want, ingestDur)
	r.note(p, "failed batches", t.String())
	if t.failures() > 0 {
		b.Logf("%s: ingest failures %s; child log tail:\n%s", p, t, c1.tail())
	}
	r.add(p, "pending deliveries", float64(want), "%.0f", "")

	time.Sleep(time.Second)
	mem := childMem(c1)
	r.add(p, "RSS with backlog pending (MiB)", mib(mem.RSS), "%.0f", key+"_pending_rss_MiB")
	r.add(p, "  of which anonymous (MiB)", mib(mem.Anon), "%.0f", key+"_pending_anon_MiB")
	r.add(p, "peak RSS during ingest (MiB)", mib(mem.Peak), "%.0f", key+"_ingest_peak_MiB")
	r.add(p, "outbox on disk (MiB)", mib(be.diskSize(dir)), "%.0f", "")
	if !full {
		be.heapProfile(b, admin1, "6 backlog pending heap")
		// Badger pools the buffers of the tables it built during the
		// ingest and lets one go every 2 s once idle; the runtime then
		// gives the memory back. Held at rest, the backlog costs this:
		time.Sleep(30 * time.Second)
		mem = childMem(c1)
		r.add(p, "RSS after 30 s more at rest (MiB)", mib(mem.RSS), "%.0f", key+"_rest_rss_MiB")
		r.add(p, "  of which anonymous (MiB)", mib(mem.Anon), "%.0f", key+"_rest_anon_MiB")
	}
	r.add(p, "stop, SIGINT → exit (s)", stopHeld(b, c1, bh).Seconds(), "%.2f", "")

	sink := newFastSink(b, true, false)
	t0 := time.Now()
	c2, admin := be.start(b, loadConfig{storage: storage, ingest: addr, route: liveRoute(sink)})
	defer c2.stop(b)
	r.add(p, "restart: listening after (s)", time.Since(t0).Seconds(), "%.2f", key+"_listen_s")
	if !waitUntil(3*time.Minute, func() bool { return sink.count.Load() > 0 }) {
		r.note(p, "restart: first delivery after (s)", "none within 3 min")
		b.Errorf("%s: no delivery within 3 minutes of the restart; child log tail:\n%s", p, c2.tail())
		return
	}
	first := time.Unix(0, sink.first.Load())
	cpuFirst := be.cpu(c2)
	profiled := func() {}
	if full {
		profiled = be.profile(b, admin, "4 drain", 10)
	}
	r.add(p, "restart: first delivery after (s)", first.Sub(t0).Seconds(), "%.2f", key+"_first_delivery_s")
	r.add(p, "RSS at first delivery (MiB)", mib(childMem(c2).RSS), "%.0f", "")

	// Wait for the drain, bounded overall and by progress.
	goal := want
	limit := 15 * time.Minute
	if !full {
		goal, limit = want/2, 30*time.Second
	}
	drainEnd := time.Now().Add(limit)
	lastCount, lastMove := int64(-1), time.Now()
	for time.Now().Before(drainEnd) {
		cnt := sink.count.Load()
		if full && sink.distinct.Load() >= goal || !full && cnt >= goal {
			break
		}
		if cnt != lastCount {
			lastCount, lastMove = cnt, time.Now()
		} else if time.Since(lastMove) > time.Minute {
			break // stalled
		}
		time.Sleep(20 * time.Millisecond)
	}
	cnt := sink.count.Load()
	drainCPU := be.cpu(c2).sub(cpuFirst)
	span := time.Unix(0, sink.last.Load()).Sub(first)
	if cnt > 1 && span > 0 {
		r.add(p, "requests to sink/s (first → last receipt)", float64(cnt-1)/span.Seconds(), "%.0f", key+"_deliv/s")
	}
	mem = childMem(c2)
	distinct, dups := sink.unique()
	if span > 0 {
		r.add(p, "distinct events delivered/s", float64(distinct)/span.Seconds(), "%.0f", key+"_distinct/s")
	}
	if full {
		r.add(p, "drain time, first → last receipt (s)", span.Seconds(), "%.1f", "")
		r.note(p, "acked / delivered (distinct) / dups", fmt.Sprintf("%d / %d / %d", want, distinct, dups))
		r.add(p, "RSS after drain (MiB)", mib(mem.RSS), "%.0f", "")
		// From the first delivery to the end of the wait: CPU while
		// draining, delivery alone.
		be.reportCPU(r, p, key+"_drain", "delivered event", drainCPU, cnt, span)
		profiled()
		if distinct < want {
			b.Errorf("%s: %d acknowledged events, %d delivered; child log tail:\n%s", p, want, distinct, c2.tail())
		}
	} else {
		r.note(p, "partly drained: requests (distinct / dups)",
			fmt.Sprintf("%d (%d / %d) of %d in %.1fs", cnt, distinct, dups, want, span.Seconds()))
		r.add(p, "RSS after partial drain (MiB)", mib(mem.RSS), "%.0f", key+"_drain_rss_MiB")
		r.add(p, "  of which anonymous (MiB)", mib(mem.Anon), "%.0f", key+"_drain_anon_MiB")
		r.add(p, "peak RSS since restart (MiB)", mib(mem.Peak), "%.0f", "")
	}
	stopStart := time.Now()
	c2.stop(b)
	r.add(p, "stop while draining, SIGINT → exit (s)", time.Since(stopStart).Seconds(), "%.2f", "")
}
