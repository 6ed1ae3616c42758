package integration

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// Phases 2a, 2b, 5 and 7 of the load harness (BenchmarkLoad).

// passThrough is phase 2a's rate, measured once per run.
type passThrough struct {
	ran  bool
	rate float64 // events/s: the lower of answers/s and the sink's receipts/s
}

// windowEnd is what a phase samples at either end of its measured
// window: the sink's receipts, the CPU time of the child (and NATS
// servers), the machine's CPU time.
type windowEnd struct {
	sink   int64
	cpu    cpuSample
	mach   machineCPU
	outbox outboxTimes
}

// sampleWindow samples at from and at to in the background; atFrom runs
// right after the first sample. The returned func waits for the second
// and returns both. Without a sink, the sink's count is left zero;
// without an admin address, the outbox's timings.
func sampleWindow(be *loadBackend, c *child, sink *fastSink, admin string, from, to time.Time, atFrom func()) func() (windowEnd, windowEnd) {
	var w0, w1 windowEnd
	take := func() windowEnd {
		w := windowEnd{cpu: be.cpu(c), mach: readMachineCPU()}
		if sink != nil {
			w.sink = sink.count.Load()
		}
		if admin != "" {
			w.outbox = scrapeOutboxTimes(admin)
		}
		return w
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(time.Until(from))
		w0 = take()
		atFrom()
		time.Sleep(time.Until(to))
		w1 = take()
	}()
	return func() (windowEnd, windowEnd) {
		<-done
		return w0, w1
	}
}

// loadMixed is phase 2b: single-event ingest while the route delivers to
// a live sink, then the time the deliveries take to catch up. Unless
// pass has run, it first runs phase 2a on a pass-through site of the same
// child, with the same bodies, and records its rate in pass; 2b's
// sustained rate is reported as a fraction of it.
func loadMixed(b *testing.B, r *loadReport, be *loadBackend, warm, window time.Duration, pass *passThrough) {
	p := be.phase("2b ingest+deliver")
	sink := newFastSink(b, true, false)
	addr := loopbackAddr(b)
	storage, _ := be.storage(b)
	lc := loadConfig{storage: storage, ingest: addr, route: liveRoute(sink)}
	var passSink *fastSink
	if !pass.ran {
		passSink = newFastSink(b, false, false)
		lc.passThrough, lc.passTo = loopbackAddr(b), passSink.URL
	}
	c, admin := be.start(b, lc)
	defer c.stop(b)
	single := make([][]byte, loadConns)
	for w := range single {
		single[w] = eventBody("load.mixed", w, 0, 0, eventSize)
	}
	body := func(w, _ int) []byte { return single[w] }
	if passSink != nil {
		pass.ran = true
		pass.rate = loadPassThrough(b, r, be, c, "http://"+lc.passThrough+"/events", passSink, body, warm, window)
	}

	client := newLoadClient(loadConns)
	defer client.CloseIdleConnections()
	from := time.Now().Add(warm)
	to := from.Add(window)
	profiled := func() {}
	sampled := sampleWindow(be, c, sink, admin, from, to, func() {
		profiled = be.profile(b, admin, "2b ingest+deliver", max(int(window.Seconds()), 1))
	})
	s := closedLoop(client, "http://"+addr+"/events", loadConns, from, to, body, is202)
	w0, w1 := sampled()
	ended := time.Now()
	r.note(p, "setup", fmt.Sprintf("%d conns single events; route → sink, concurrency 64", loadConns))
	reportLoop(b, r, c, p, be.key("mixed"), s, 1)
	delivered := w1.sink - w0.sink
	deliv := float64(delivered) / window.Seconds()
	r.add(p, "deliveries/s during ingest", deliv, "%.0f", be.key("mixed_deliv/s"))
	sustained := min(s.rate(), deliv)
	r.add(p, "sustained ingest+delivery events/s (lower of the two)", sustained, "%.0f", be.key("mixed_sustained_ev/s"))
	if pass.rate > 0 {
		r.add(p, "fraction of pass-through (2a)", sustained/pass.rate, "%.3f", be.key("mixed_of_passthrough"))
	} else {
		r.note(p, "fraction of pass-through (2a)", "no pass-through rate measured")
	}
	// Ingest and delivery share the window: CPU per event ingested and
	// delivered is the window's CPU over the larger of the two counts.
	be.reportCPU(r, p, be.key("mixed"), "event ingested+delivered", w1.cpu.sub(w0.cpu), max(s.reqs, delivered), window)
	reportIdle(r, p, be.key("mixed"), w0.mach, w1.mach)
	reportOutbox(r, p, be.key("mixed"), w0.outbox, w1.outbox)
	profiled()

	acked := s.tally.ok.Load()
	caught := waitUntil(5*time.Minute, func() bool { return sink.distinct.Load() >= acked })
	distinct, dups := sink.unique()
	if caught {
		r.add(p, "backlog drained after ingest stop (s)", time.Since(ended).Seconds(), "%.1f", be.key("mixed_catchup_s"))
	} else {
		r.note(p, "backlog drained after ingest stop (s)", "not within 5 min")
	}
	r.note(p, "acked / delivered (distinct) / dups", fmt.Sprintf("%d / %d / %d", acked, distinct, dups))
	if distinct < acked {
		b.Errorf("%s: %d acknowledged events, only %d delivered; child log tail:\n%s", p, acked, distinct, c.tail())
	}
}

// loadPassThrough is phase 2a: the load of phase 2b posted to child c's
// pass-through site (url), which forwards each request to sink with
// Caddy's reverse_proxy, storing nothing. It returns the pass-through's
// events/s: the lower of its answers/s and the sink's receipts/s.
func loadPassThrough(b *testing.B, r *loadReport, be *loadBackend, c *child, url string, sink *fastSink,
	body func(w, i int) []byte, warm, window time.Duration) float64 {
	p := "2a pass-through"
	client := newLoadClient(loadConns)
	defer client.CloseIdleConnections()
	from := time.Now().Add(warm)
	to := from.Add(window)
	sampled := sampleWindow(be, c, sink, "", from, to, func() {})
	s := closedLoop(client, url, loadConns, from, to, body, func(st int) bool { return st == http.StatusOK })
	w0, w1 := sampled()
	r.note(p, "setup", fmt.Sprintf("%d conns, %d B single events → reverse_proxy (path rewritten, up to 64 idle conns) → sink; nothing stored; in the child of %s",
		loadConns, len(body(0, 0)), be.phase("2b")))
	reportLoop(b, r, c, p, "passthrough", s, 1)
	received := w1.sink - w0.sink
	recv := float64(received) / window.Seconds()
	r.add(p, "sink receipts/s", recv, "%.0f", "passthrough_sink/s")
	rate := min(s.rate(), recv)
	r.add(p, "pass-through events/s (lower of the two)", rate, "%.0f", "passthrough_ev/s")
	// Only the Caddy child works here: its webhooks app is idle, and
	// NATS servers (with HOOKGATE_LOAD_NATS=only) are not in the path.
	if events := max(s.reqs, received); events > 0 {
		d := w1.cpu.sub(w0.cpu).caddy
		perEv := func(t time.Duration) float64 { return float64(t) / float64(time.Millisecond) / float64(events) }
		r.add(p, "Caddy CPU per event passed through (ms)", perEv(d.CPU()), "%.3f", "passthrough_caddy_cpu_ms")
		r.add(p, "  of which in the kernel (ms)", perEv(d.System), "%.3f", "passthrough_caddy_sys_ms")
		r.add(p, "  minor page faults per event passed through", float64(d.MinorFaults)/float64(events), "%.2f", "passthrough_caddy_faults")
		r.add(p, "Caddy CPU cores busy", d.CPU().Seconds()/window.Seconds(), "%.2f", "")
	}
	reportIdle(r, p, "passthrough", w0.mach, w1.mach)
	return rate
}

// loadLatency is phase 5: an open-loop pacer posts `rate` single events
// per second through several workers; each event carries its send time
// and the time the pacer scheduled it, and the sink computes the
// latencies. The first `warm` is not measured.
func loadLatency(b *testing.B, r *loadReport, be *loadBackend, rate int, warm, dur time.Duration) {
	p := be.phase("5 end-to-end latency")
	const workers = 32
	sink := newFastSink(b, true, true)
	addr := loopbackAddr(b)
	storage, _ := be.storage(b)
	c, _ := be.start(b, loadConfig{storage: storage, ingest: addr, route: liveRoute(sink)})
	defer c.stop(b)
	client := newLoadClient(workers)
	defer client.CloseIdleConnections()
	url := "http://" + addr + "/events"

	interval := time.Second / time.Duration(rate)
	total := int((warm + dur) / interval)
	start := time.Now()
	measureFrom := start.Add(warm).UnixNano()
	jobs := make(chan int, 4096)
	t := newTally()
	lats := make([][]time.Duration, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := range jobs {
				sched := start.Add(time.Duration(i) * interval).UnixNano()
				t0 := time.Now()
				body := eventBody("load.e2e", i, t0.UnixNano(), sched, eventSize)
				st, ans, err := postJSON(client, url, body)
				ok := err == nil && st == 202
				t.add(st, ans, err, ok)
				if ok && sched >= measureFrom {
					lats[w] = append(lats[w], time.Since(t0))
				}
			}
		}(w)
	}
	// Open loop: the schedule does not wait for answers; when every
	// worker is busy and the queue is full, the event is dropped and
	// counted.
	dropped := 0
	ticker := time.NewTicker(time.Millisecond)
	for i := 0; i < total; {
		<-ticker.C
		due := min(int(time.Since(start)/interval)+1, total)
		for ; i < due; i++ {
			select {
			case jobs <- i:
			default:
				dropped++
			}
		}
	}
	ticker.Stop()
	close(jobs)
	wg.Wait()
	acked := t.ok.Load()
	if !waitUntil(60*time.Second, func() bool { return sink.distinct.Load() >= acked }) {
		b.Errorf("%s: %d acknowledged, %d delivered after 60s; child log tail:\n%s", p, acked, sink.distinct.Load(), c.tail())
	}

	var fromSent, fromSched []time.Duration
	sink.mu.Lock()
	for _, s := range sink.lat {
		if s.sched >= measureFrom {
			fromSent = append(fromSent, time.Duration(s.recv-s.sent))
			fromSched = append(fromSched, time.Duration(s.recv-s.sched))
		}
	}
	unparsed := sink.unparsed
	sink.mu.Unlock()
	slices.Sort(fromSent)
	slices.Sort(fromSched)
	var ingestLat []time.Duration
	for _, l := range lats {
		ingestLat = append(ingestLat, l...)
	}
	slices.Sort(ingestLat)

	r.note(p, "setup", fmt.Sprintf("%d ev/s open loop for %s after %s warm-up, %d workers; route → sink, concurrency 64", rate, dur, warm, workers))
	r.add(p, "events measured", float64(len(fromSent)), "%.0f", "")
	r.add(p, "achieved events/s", float64(len(fromSent))/dur.Seconds(), "%.0f", be.key("e2e_ev/s"))
	r.add(p, "e2e p50, post → sink (ms)", ms(pct(fromSent, 0.50)), "%.2f", be.key("e2e_p50_ms"))
	r.add(p, "e2e p99, post → sink (ms)", ms(pct(fromSent, 0.99)), "%.2f", be.key("e2e_p99_ms"))
	r.add(p, "e2e max, post → sink (ms)", ms(pct(fromSent, 1)), "%.2f", "")
	r.add(p, "e2e p99, schedule → sink (ms)", ms(pct(fromSched, 0.99)), "%.2f", "")
	r.add(p, "ingest 202 p50 (ms)", ms(pct(ingestLat, 0.50)), "%.2f", be.key("e2e_ingest_p50_ms"))
	r.add(p, "ingest 202 p99 (ms)", ms(pct(ingestLat, 0.99)), "%.2f", be.key("e2e_ingest_p99_ms"))
	_, dups := sink.unique()
	r.note(p, "dropped by pacer / failed / dups / unparsed",
		fmt.Sprintf("%d / %s / %d / %d", dropped, t.String(), dups, unparsed))
	if t.failures() > 0 {
		b.Logf("%s: failures %s; child log tail:\n%s", p, t, c.tail())
	}
}

// loadDisk is phase 7 (Badger only): n events ingested in batches of
// 1000 from 4 connections to a route delivering to a live sink; once
// every one is delivered, the outbox's size per event right after the
// drain, after `settle` with the child idle, and after the child stops.
// The default retention (72h) keeps every event for look-up. A non-zero
// gcInterval is written as the app's gc_interval.
func loadDisk(b *testing.B, r *loadReport, be *loadBackend, n int, gcInterval, settle time.Duration) {
	const (
		posters   = 4
		batchSize = 1000
	)
	p := "7 disk per delivered event"
	sink := newFastSink(b, true, false)
	storage, dir := be.storage(b)
	addr := loopbackAddr(b)
	started := time.Now()
	c, _ := be.start(b, loadConfig{storage: storage, ingest: addr, gcInterval: gcInterval, route: liveRoute(sink)})
	defer c.stop(b)
	client := newLoadClient(posters)
	defer client.CloseIdleConnections()

	r.note(p, "setup", fmt.Sprintf("%d events of %d B in batches of %d, %d conns, route → sink (concurrency 64) while ingesting; retention 72h (every event kept); value-log GC every %s",
		n, eventSize, batchSize, posters, gcInterval))
	t0 := time.Now()
	in := ingestBatches(client, "http://"+addr+"/events", "load.disk", n, posters, batchSize)
	r.add(p, "ingest events/s while delivering (batches of 1000)", float64(in.acked)/time.Since(t0).Seconds(), "%.0f", "")
	r.note(p, "failed batches", in.tally.String())
	if in.acked == 0 {
		b.Errorf("%s: no batch acknowledged; child log tail:\n%s", p, c.tail())
		return
	}

	// Wait for every delivery, bounded overall and by progress.
	end := time.Now().Add(15 * time.Minute)
	last, lastMove := int64(-1), time.Now()
	for sink.distinct.Load() < in.acked && time.Now().Before(end) && time.Since(lastMove) < time.Minute {
		if cnt := sink.count.Load(); cnt != last {
			last, lastMove = cnt, time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	distinct, dups := sink.unique()
	r.note(p, "acked / delivered (distinct) / dups", fmt.Sprintf("%d / %d / %d", in.acked, distinct, dups))
	if distinct < in.acked {
		b.Errorf("%s: %d acknowledged events, %d delivered; child log tail:\n%s", p, in.acked, distinct, c.tail())
		return
	}
	r.add(p, "ingest start → every event delivered (s)", time.Since(t0).Seconds(), "%.1f", "")

	size := func(when, key string) {
		length, alloc := dirUsage(dir)
		perEv := func(n int64) float64 { return float64(n) / 1024 / float64(in.acked) }
		r.add(p, "disk per event "+when+" (KiB allocated)", perEv(alloc), "%.2f", key)
		r.add(p, "  files' length per event (KiB)", perEv(length), "%.2f", "")
		r.note(p, "  outbox allocated / files' length (MiB)", fmt.Sprintf("%.0f / %.0f", mib(alloc), mib(length)))
		r.note(p, "  allocated by kind (MiB)", badgerUsage(dir))
	}
	size("right after the drain", "disk_drained_KiB/ev")
	time.Sleep(settle)
	size(fmt.Sprintf("after %s idle", settle), "disk_KiB/ev")
	// The GC ticker starts when the outbox opens: whole intervals since
	// then are the GC runs the outbox has made by now.
	r.add(p, "value-log GC intervals elapsed since Caddy started", float64(time.Since(started)/gcInterval), "%.0f", "disk_gc_intervals")
	c.stop(b)
	size("after Caddy stops", "disk_stopped_KiB/ev")
}
