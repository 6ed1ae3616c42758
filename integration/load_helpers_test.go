package integration

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/hookgate/hookgate/internal/procstat"
)

// Helpers of the load harness (load_test.go). Everything listens on and
// dials 127.0.0.1 only.

// eventSize is the size of one event's JSON, as posted.
const eventSize = 1024

// maxLoopIter bounds every load-generator loop in count, besides its time
// bound.
const maxLoopIter = 10_000_000

// eventBody returns one event of exactly size bytes of JSON (when size
// leaves room for the fields). sentNs and schedNs are carried in data for
// the end-to-end latency phase; zero elsewhere.
func eventBody(typ string, n int, sentNs, schedNs int64, size int) []byte {
	head := fmt.Sprintf(`{"type":%q,"data":{"n":%d,"sent_ns":%d,"sched_ns":%d,"pad":"`, typ, n, sentNs, schedNs)
	const tail = `"}}`
	pad := max(size-len(head)-len(tail), 0)
	b := make([]byte, 0, len(head)+pad+len(tail))
	b = append(b, head...)
	for i := 0; i < pad; i++ {
		b = append(b, 'a'+byte(i%26))
	}
	return append(b, tail...)
}

// batchBody returns a JSON array of n events of size bytes each.
func batchBody(typ string, n, size int) []byte {
	var b bytes.Buffer
	b.Grow(n*(size+1) + 2)
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(eventBody(typ, i, 0, 0, size))
	}
	b.WriteByte(']')
	return b.Bytes()
}

// newLoadClient is a keep-alive client for up to conns concurrent
// requests to one host.
func newLoadClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: (&net.Dialer{
				Timeout:   5 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			MaxIdleConns:        2 * conns,
			MaxIdleConnsPerHost: 2 * conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		Timeout: 120 * time.Second,
	}
}

// postJSON posts body and returns the status and the start of the answer.
// The answer is read to its end so the connection is reused.
func postJSON(c *http.Client, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	ans, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, ans, nil
}

// tally counts the answers of a load phase: successes, other statuses
// and transport errors, with a few samples of what went wrong.
type tally struct {
	ok       atomic.Int64
	mu       sync.Mutex
	statuses map[int]int64 // unexpected statuses
	errs     int64
	samples  []string
}

func newTally() *tally { return &tally{statuses: make(map[int]int64)} }

func (t *tally) add(status int, ans []byte, err error, good bool) {
	if good {
		t.ok.Add(1)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var sample string
	if err != nil {
		t.errs++
		sample = "error: " + err.Error()
	} else {
		t.statuses[status]++
		sample = fmt.Sprintf("%d %s", status, strings.TrimSpace(string(ans)))
	}
	if len(t.samples) < 5 {
		if len(sample) > 300 {
			sample = sample[:300] + "…"
		}
		t.samples = append(t.samples, sample)
	}
}

// failures is how many requests did not succeed.
func (t *tally) failures() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.errs
	for _, c := range t.statuses {
		n += c
	}
	return n
}

// String summarises the failures ("none" when there were none).
func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.errs == 0 && len(t.statuses) == 0 {
		return "none"
	}
	var parts []string
	codes := make([]int, 0, len(t.statuses))
	for c := range t.statuses {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", t.statuses[c], c))
	}
	if t.errs > 0 {
		parts = append(parts, fmt.Sprintf("%d transport errors", t.errs))
	}
	return strings.Join(parts, ", ") + "; e.g. " + strings.Join(t.samples, " | ")
}

// loadStats is what a closed-loop phase measured in its window.
type loadStats struct {
	reqs   int64         // successful requests completed in the window
	window time.Duration // length of the window
	lat    []time.Duration
	tally  *tally // every answer of the run, warm-up included
}

func (s *loadStats) rate() float64 { return float64(s.reqs) / s.window.Seconds() }

// closedLoop runs workers that each post body(worker, i) back to back
// until `to`, and measures the successful requests that complete between
// `from` and `to`. Every loop is bounded in time and count.
func closedLoop(c *http.Client, url string, workers int, from, to time.Time,
	body func(w, i int) []byte, good func(int) bool) *loadStats {
	lats := make([][]time.Duration, workers)
	t := newTally()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < maxLoopIter && time.Now().Before(to); i++ {
				b := body(w, i)
				t0 := time.Now()
				st, ans, err := postJSON(c, url, b)
				t1 := time.Now()
				ok := err == nil && good(st)
				t.add(st, ans, err, ok)
				if ok && !t1.Before(from) && !t1.After(to) {
					lats[w] = append(lats[w], t1.Sub(t0))
				}
				if err != nil {
					time.Sleep(10 * time.Millisecond) // don't spin on a dead server
				}
			}
		}(w)
	}
	wg.Wait()
	s := &loadStats{window: to.Sub(from), tally: t}
	for _, l := range lats {
		s.lat = append(s.lat, l...)
	}
	slices.Sort(s.lat)
	s.reqs = int64(len(s.lat))
	return s
}

// pct returns the p-quantile (0 < p ≤ 1) of sorted durations.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fastSink is a plain net/http endpoint on 127.0.0.1 that answers 200
// with no body and counts with atomics. It optionally tracks webhook-ids
// (for losses and duplicates) and end-to-end latencies (from the sent_ns
// and sched_ns fields of the event's data).
type fastSink struct {
	srv   *http.Server
	URL   string
	count atomic.Int64
	// distinct counts distinct webhook-ids (with trackIDs).
	distinct atomic.Int64
	first    atomic.Int64 // unix ns of the first request
	last     atomic.Int64 // unix ns of the latest request

	trackIDs, trackLatency bool
	mu                     sync.Mutex
	ids                    map[string]int32
	lat                    []e2eSample
	unparsed               int64
}

type e2eSample struct{ sent, sched, recv int64 }

func newFastSink(t testing.TB, trackIDs, trackLatency bool) *fastSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fastSink{URL: "http://" + ln.Addr().String(), trackIDs: trackIDs, trackLatency: trackLatency,
		ids: make(map[string]int32)}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *fastSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UnixNano()
	var body []byte
	if s.trackLatency {
		body, _ = io.ReadAll(r.Body)
	} else {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	s.count.Add(1)
	s.first.CompareAndSwap(0, now)
	for {
		l := s.last.Load()
		if now <= l || s.last.CompareAndSwap(l, now) {
			break
		}
	}
	if s.trackIDs || s.trackLatency {
		var smp e2eSample
		parsed := false
		if s.trackLatency {
			smp.sent, parsed = jsonInt(body, `"sent_ns":`)
			smp.sched, _ = jsonInt(body, `"sched_ns":`)
			smp.recv = now
		}
		s.mu.Lock()
		if s.trackIDs {
			id := r.Header.Get("Webhook-Id")
			if s.ids[id] == 0 {
				s.distinct.Add(1)
			}
			s.ids[id]++
		}
		if s.trackLatency {
			if parsed && smp.sent > 0 {
				s.lat = append(s.lat, smp)
			} else {
				s.unparsed++
			}
		}
		s.mu.Unlock()
	}
	w.WriteHeader(http.StatusOK)
}

// unique returns how many distinct webhook-ids arrived and how many
// requests repeated one.
func (s *fastSink) unique() (distinct, dups int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.ids {
		distinct++
		dups += int64(n - 1)
	}
	return distinct, dups
}

// jsonInt finds key (with its colon) in b and parses the integer after it.
func jsonInt(b []byte, key string) (int64, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := b[i+len(key):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	v, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return v, err == nil
}

// blackHole accepts connections on 127.0.0.1 and never answers: a route
// pointing at it with concurrency 1 and a long timeout holds one attempt
// forever, so every other delivery stays pending on disk, never
// attempted (due now). That is a "disabled" route for the harness.
type blackHole struct {
	ln       net.Listener
	URL      string
	accepted atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
	closed   bool
}

func newBlackHole(t testing.TB) *blackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &blackHole{ln: ln, URL: "http://" + ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.accepted.Add(1)
			h.mu.Lock()
			if h.closed {
				c.Close()
			} else {
				h.conns = append(h.conns, c)
			}
			h.mu.Unlock()
			go io.Copy(io.Discard, c)
		}
	}()
	t.Cleanup(h.close)
	return h
}

// close stops accepting and drops the held connections.
func (h *blackHole) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	h.ln.Close()
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
}

// stopHeld stops a child whose route holds an attempt on h: SIGINT, then
// h drops the held connection so that attempt ends at once instead of
// after the engine's shutdown grace. It returns how long the stop took.
func stopHeld(t testing.TB, c *child, h *blackHole) time.Duration {
	t.Helper()
	go func() {
		time.Sleep(200 * time.Millisecond)
		h.close()
	}()
	start := time.Now()
	c.stop(t)
	return time.Since(start)
}

// childMem returns the child's resident memory (zeros if it cannot be
// read). Its anonymous part matters: Badger memory-maps its value log, so
// pages it wrote count in VmRSS but are page cache the kernel can reclaim.
func childMem(c *child) procstat.Memory {
	m, _ := procstat.Mem(c.cmd.Process.Pid)
	return m
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// waitUntil polls cond every 20ms until it holds or timeout passes, and
// reports whether it held.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// envInt reads a non-negative integer from the environment.
func envInt(t testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.ReplaceAll(v, "_", ""))
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// envDuration reads a positive duration from the environment.
func envDuration(t testing.TB, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

// loadReport collects the figures of a run: a table for people and
// metrics for the benchmark line.
type loadReport struct {
	b       *testing.B
	rows    [][3]string
	metrics []struct {
		v    float64
		unit string
	}
}

// add records one figure. unit names the benchmark metric (no spaces);
// empty means table only.
func (r *loadReport) add(phase, figure string, value float64, format, unit string) {
	r.rows = append(r.rows, [3]string{phase, figure, fmt.Sprintf(format, value)})
	if unit != "" {
		r.metrics = append(r.metrics, struct {
			v    float64
			unit string
		}{value, unit})
	}
}

// get returns the value last added under the metric unit, if any.
func (r *loadReport) get(unit string) (float64, bool) {
	for i := len(r.metrics) - 1; i >= 0; i-- {
		if r.metrics[i].unit == unit {
			return r.metrics[i].v, true
		}
	}
	return 0, false
}

// note records a line of text in the table.
func (r *loadReport) note(phase, figure, text string) {
	r.rows = append(r.rows, [3]string{phase, figure, text})
}

func (r *loadReport) table() string {
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tfigure\tvalue")
	last := ""
	for _, row := range r.rows {
		phase := row[0]
		if phase == last {
			phase = ""
		}
		last = row[0]
		fmt.Fprintf(tw, "%s\t%s\t%s\n", phase, row[1], row[2])
	}
	tw.Flush()
	return sb.String()
}

func (r *loadReport) finish() {
	for _, m := range r.metrics {
		r.b.ReportMetric(m.v, m.unit)
	}
	r.b.ReportMetric(0, "ns/op") // one run of the whole harness: not meaningful
	// Printed, not logged: a benchmark's log is cut to ten lines without
	// -v.
	fmt.Printf("\nhookgate load harness (%d CPUs shared by load generator, sinks and Caddy):\n%s\n",
		runtime.NumCPU(), r.table())
}

// batchIngest is what ingestBatches measured.
type batchIngest struct {
	acked int64           // events in batches answered 202
	lat   []time.Duration // per acknowledged batch, sorted
	tally *tally
}

// ingestBatches posts n events of eventSize bytes, of type typ, in
// batches of batchSize from `posters` connections, and returns once all
// are posted or the bound passes: at least 2,000 events/s, and never
// less than two minutes. A failed batch is not posted again.
func ingestBatches(client *http.Client, url, typ string, n, posters, batchSize int) *batchIngest {
	fullBatch := batchBody(typ, batchSize, eventSize)
	var tailBatch []byte
	if n%batchSize != 0 {
		tailBatch = batchBody(typ, n%batchSize, eventSize)
	}
	batches := int64((n + batchSize - 1) / batchSize)
	var next, acked atomic.Int64
	t := newTally()
	lats := make([][]time.Duration, posters)
	deadline := time.Now().Add(max(2*time.Minute, time.Duration(n/2000)*time.Second))
	var wg sync.WaitGroup
	for w := 0; w < posters; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for k := 0; k < maxLoopIter && time.Now().Before(deadline); k++ {
				j := next.Add(1) - 1
				if j >= batches {
					return
				}
				body, size := fullBatch, batchSize
				if j == batches-1 && tailBatch != nil {
					body, size = tailBatch, n%batchSize
				}
				t0 := time.Now()
				st, ans, err := postJSON(client, url, body)
				ok := err == nil && st == 202
				t.add(st, ans, err, ok)
				if ok {
					acked.Add(int64(size))
					lats[w] = append(lats[w], time.Since(t0))
				} else {
					time.Sleep(100 * time.Millisecond)
				}
			}
		}(w)
	}
	wg.Wait()
	in := &batchIngest{acked: acked.Load(), tally: t}
	for _, l := range lats {
		in.lat = append(in.lat, l...)
	}
	slices.Sort(in.lat)
	return in
}

// waitListening waits until addr, a site of child c, accepts
// connections.
func waitListening(t testing.TB, c *child, addr string) {
	t.Helper()
	if !waitUntil(10*time.Second, func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}) {
		t.Fatalf("site %s of the caddy child not listening; log:\n%s", addr, c.tail())
	}
}

// machineCPU is the machine's CPU time so far, all cores, in ticks, from
// the first line of /proc/stat; zero if it cannot be read.
type machineCPU struct{ total, idle, iowait int64 }

func readMachineCPU() machineCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}
	}
	// user nice system idle iowait irq softirq steal; guest time is
	// already counted in user and nice.
	var m machineCPU
	for i := 1; i <= 8; i++ {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return machineCPU{}
		}
		m.total += v
		switch i {
		case 4:
			m.idle = v
		case 5:
			m.iowait = v
		}
	}
	return m
}

// idleSince returns the fractions of the machine's CPU time since o that
// were idle (waiting on I/O included) and waiting on I/O; ok is false if
// either reading failed.
func (m machineCPU) idleSince(o machineCPU) (idle, iowait float64, ok bool) {
	d := m.total - o.total
	if o.total == 0 || d <= 0 {
		return 0, 0, false
	}
	return float64(m.idle-o.idle+m.iowait-o.iowait) / float64(d), float64(m.iowait-o.iowait) / float64(d), true
}

// reportIdle adds the machine's idle CPU between two readings.
func reportIdle(r *loadReport, p, key string, from, to machineCPU) {
	idle, iowait, ok := to.idleSince(from)
	if !ok {
		r.note(p, "machine CPU idle over the window", "/proc/stat not readable")
		return
	}
	r.add(p, "machine CPU idle over the window (fraction, all cores; ≈0: CPU-bound)", idle, "%.2f", key+"_machine_idle")
	r.add(p, "  of which waiting on I/O", iowait, "%.2f", "")
}

// outboxTimes are the sums and counts of the outbox's timing histograms
// (hookgate_outbox_*) as the child's /metrics last gave them: the Badger
// outbox's, absent (zero) on NATS. Each ingest is counted once in both
// stages, so one count serves both.
type outboxTimes struct {
	ingests, commitSum, syncSum float64 // ingests, and their waits for a commit and a sync round
	rounds, roundSum            float64 // sync rounds
}

// scrapeOutboxTimes reads outboxTimes from the child's admin endpoint; a
// failed scrape leaves them zero, and the report says nothing of them.
func scrapeOutboxTimes(admin string) outboxTimes {
	m, err := fetchMetrics(admin)
	if err != nil {
		return outboxTimes{}
	}
	return outboxTimes{
		ingests:   m[`hookgate_outbox_ingest_wait_seconds_count{stage="commit"}`],
		commitSum: m[`hookgate_outbox_ingest_wait_seconds_sum{stage="commit"}`],
		syncSum:   m[`hookgate_outbox_ingest_wait_seconds_sum{stage="sync"}`],
		rounds:    m["hookgate_outbox_sync_seconds_count"],
		roundSum:  m["hookgate_outbox_sync_seconds_sum"],
	}
}

// reportOutbox reports where an ingest's time in the outbox went over a
// window: its wait for the committer and for a sync round, the rounds'
// length, and the ingests each round made durable.
func reportOutbox(r *loadReport, p, key string, from, to outboxTimes) {
	ingests, rounds := to.ingests-from.ingests, to.rounds-from.rounds
	if ingests <= 0 || rounds <= 0 {
		return
	}
	ms := func(sum, n float64) float64 { return sum / n * 1000 }
	r.add(p, "outbox: ingest wait for its commit, mean (ms)", ms(to.commitSum-from.commitSum, ingests), "%.2f", key+"_commit_wait_ms")
	r.add(p, "outbox: ingest wait for a journal sync round, mean (ms)", ms(to.syncSum-from.syncSum, ingests), "%.2f", key+"_sync_wait_ms")
	r.add(p, "outbox: journal sync round (write and fdatasync), mean (ms)", ms(to.roundSum-from.roundSum, rounds), "%.2f", key+"_sync_round_ms")
	r.add(p, "outbox: ingests per journal sync round", ingests/rounds, "%.1f", "")
}

// badgerUsage breaks the space allocated under a Badger directory down
// by kind of file: value log, tables, memtables' logs, the rest.
func badgerUsage(dir string) string {
	kinds := []string{".vlog", ".sst", ".mem"}
	alloc := make([]int64, len(kinds)+1)
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		i := slices.Index(kinds, filepath.Ext(path))
		if i < 0 {
			i = len(kinds)
		}
		alloc[i] += st.Blocks * 512
		return nil
	})
	return fmt.Sprintf("value log %.0f, tables %.0f, memtables %.0f, other %.0f", mib(alloc[0]), mib(alloc[1]), mib(alloc[2]), mib(alloc[3]))
}

// dirUsage returns the total length of the regular files under dir and
// the space allocated to them on disk (what du counts; less than the
// length for sparse files, such as Badger's memory-mapped ones).
func dirUsage(dir string) (length, allocated int64) {
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		length += fi.Size()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			allocated += st.Blocks * 512
		}
		return nil
	})
	return length, allocated
}
