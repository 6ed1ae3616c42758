package module

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookgate/hookgate/persist"
)

// metrics are hookgate's Prometheus collectors. They are made once per
// process and registered with every config's registry (Caddy gives each
// config load its own), so counters keep counting across reloads.
var metrics = struct {
	once       sync.Once
	ingested   *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	ruleErrors *prometheus.CounterVec
	syncRound  prometheus.Histogram
	ingestWait *prometheus.HistogramVec
	state      *stateCollector
}{}

func initMetrics() {
	metrics.once.Do(func() {
		const ns = "hookgate"
		metrics.ingested = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "events_ingested_total",
			Help: "Events accepted and stored (duplicates excluded), by source.",
		}, []string{"source"})
		metrics.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "deliveries_total",
			Help: "Delivery attempts by route and outcome (delivered, retry, dead), with the failure class.",
		}, []string{"route", "outcome", "class"})
		metrics.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "delivery_duration_seconds",
			Help:    "Duration of delivery attempts, from sending to the end of the response.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"})
		metrics.ruleErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "rule_errors_total",
			Help: "Rule evaluations that failed (counted as no match), by route.",
		}, []string{"route"})
		// The outbox's durability path, in the range a disk's fsync
		// spans: a tenth of a millisecond to a second.
		outboxBuckets := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}
		metrics.syncRound = prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "outbox_sync_seconds",
			Help:    "Duration of the outbox journal's sync rounds (a write and an fdatasync), each making every ingest committed before it durable. Badger outbox only.",
			Buckets: outboxBuckets,
		})
		metrics.ingestWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "outbox_ingest_wait_seconds",
			Help:    "Time an ingest spent in the outbox before its answer, by stage: commit (queued for and written by the committer), sync (waiting for a journal sync round). Badger outbox only.",
			Buckets: outboxBuckets,
		}, []string{"stage"})
		metrics.state = newStateCollector()
	})
}

// outboxObserver feeds the outbox's durability timings to the metrics.
type outboxObserver struct {
	round, commit, sync prometheus.Observer
}

func newOutboxObserver() outboxObserver {
	initMetrics()
	return outboxObserver{
		round:  metrics.syncRound,
		commit: metrics.ingestWait.WithLabelValues("commit"),
		sync:   metrics.ingestWait.WithLabelValues("sync"),
	}
}

func (o outboxObserver) SyncRound(d time.Duration) {
	o.round.Observe(d.Seconds())
}

func (o outboxObserver) IngestWait(commit, sync time.Duration) {
	o.commit.Observe(commit.Seconds())
	o.sync.Observe(sync.Seconds())
}

// collectors are hookgate's collectors, all of them.
func collectors() []prometheus.Collector {
	return []prometheus.Collector{metrics.ingested, metrics.deliveries, metrics.duration,
		metrics.ruleErrors, metrics.syncRound, metrics.ingestWait, metrics.state}
}

// registerMetrics registers the collectors with a config's registry.
func registerMetrics(reg *prometheus.Registry) error {
	initMetrics()
	if reg == nil {
		return nil
	}
	for _, c := range collectors() {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// stateCollector reports gauges read from the running engines when
// scraped, so they cost nothing between scrapes.
type stateCollector struct {
	pending, dead, circuitOpen, oldest *prometheus.Desc
	storageFull, storageFree           *prometheus.Desc
}

func newStateCollector() *stateCollector {
	route := []string{"route"}
	return &stateCollector{
		pending:     prometheus.NewDesc("hookgate_pending", "Pending deliveries by route.", route, nil),
		dead:        prometheus.NewDesc("hookgate_dead", "Dead deliveries kept, by route.", route, nil),
		circuitOpen: prometheus.NewDesc("hookgate_circuit_open", "1 while the route's circuit breaker is open.", route, nil),
		oldest:      prometheus.NewDesc("hookgate_oldest_pending_age_seconds", "Age of the oldest pending delivery that is due, by route.", route, nil),
		storageFull: prometheus.NewDesc("hookgate_storage_full", "1 while ingest answers 503 storage_full: the outbox is short of space (min_free, max_storage).", nil, nil),
		storageFree: prometheus.NewDesc("hookgate_storage_free_bytes", "Free space on the outbox's file system, as the outbox last measured it.", nil, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.dead
	ch <- c.circuitOpen
	ch <- c.oldest
	ch <- c.storageFull
	ch <- c.storageFree
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	// One value over all engines (a reload that moves the storage has two
	// for a moment): full if any is, the least free space.
	var (
		full, watched bool
		free          int64 = -1
	)
	engines.Range(func(_, v any) bool {
		e, ok := v.(*Engine)
		if !ok {
			return true
		}
		if sp, ok := e.storageState(); ok {
			watched = true
			full = full || sp.Full
			if sp.Free >= 0 && (free < 0 || sp.Free < free) {
				free = sp.Free
			}
		}
		for _, s := range e.Stats() {
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(s.Pending), s.Route)
			ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(s.Dead), s.Route)
			open := 0.0
			if s.Circuit == "open" {
				open = 1
			}
			ch <- prometheus.MustNewConstMetric(c.circuitOpen, prometheus.GaugeValue, open, s.Route)
			ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, e.oldestPendingAge(s.Route).Seconds(), s.Route)
		}
		return true
	})
	if watched {
		v := 0.0
		if full {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.storageFull, prometheus.GaugeValue, v)
		if free >= 0 {
			ch <- prometheus.MustNewConstMetric(c.storageFree, prometheus.GaugeValue, float64(free))
		}
	}
}

// oldestPendingAge is how long the route's oldest due delivery has waited
// since it was created: the first entry of the ready index (earliest due),
// read at scrape time. Zero when nothing is due.
func (e *Engine) oldestPendingAge(route string) time.Duration {
	now := e.now()
	refs, _, err := e.store.Due(route, now, 1, nil)
	if err != nil || len(refs) == 0 {
		return 0
	}
	d, err := e.store.Delivery(refs[0].ID)
	if err != nil || d.Created.IsZero() {
		return 0
	}
	return max(now.Sub(d.Created), 0)
}

func outcomeLabel(st persist.Status) string {
	switch st {
	case persist.StatusDelivered:
		return "delivered"
	case persist.StatusDead:
		return "dead"
	}
	return "retry"
}

// routeSeries are the series a route's attempts update most, looked up
// once instead of by label values for every attempt. Each is made when
// first counted, as WithLabelValues would make it: no series shows up
// before its first count.
type routeSeries struct {
	delivered atomic.Pointer[prometheus.Counter]
	duration  atomic.Pointer[prometheus.Observer]
}

// countAttempt counts one attempt's outcome and duration, with the
// delivered counter and the duration histogram looked up once.
func (d *dispatcher) countAttempt(st persist.Status, res result) {
	initMetrics()
	if st == persist.StatusDelivered && res.class == "" {
		c := d.series.delivered.Load()
		if c == nil {
			v := metrics.deliveries.WithLabelValues(d.name, "delivered", "")
			c = &v
			d.series.delivered.Store(c)
		}
		(*c).Inc()
	} else {
		metrics.deliveries.WithLabelValues(d.name, outcomeLabel(st), res.class).Inc()
	}
	o := d.series.duration.Load()
	if o == nil {
		v := metrics.duration.WithLabelValues(d.name)
		o = &v
		d.series.duration.Store(o)
	}
	(*o).Observe(res.dur.Seconds())
}

// countIngested counts stored events by source.
func countIngested(source string, n int) {
	initMetrics()
	metrics.ingested.WithLabelValues(sourceLabel(source)).Add(float64(n))
}

// maxSourceLabels bounds the source label's values. An inbound endpoint
// without `source` is labelled with the request's path, which a matcher
// like /hooks/* lets every client choose: without a bound, each new path
// would be a new time series for as long as the process runs.
const maxSourceLabels = 100

// otherSource is the label of sources past maxSourceLabels.
const otherSource = "other"

// sourceLabels holds the sources labelled so far, sourceCount how many.
// Read on every ingest, so a sync.Map: no lock once a source is in; a
// new one is added under sourceMu, so the bound is exact.
var (
	sourceLabels sync.Map
	sourceCount  atomic.Int64
	sourceMu     sync.Mutex
)

// sourceLabel is source, or otherSource once maxSourceLabels others
// have been seen. Only sources taken from the request path (they start
// with "/") count against the bound: "api" and configured names are
// few, and must not lose their label to junk paths that came first.
func sourceLabel(source string) string {
	if !strings.HasPrefix(source, "/") {
		return source
	}
	if _, ok := sourceLabels.Load(source); ok {
		return source
	}
	sourceMu.Lock()
	defer sourceMu.Unlock()
	if _, ok := sourceLabels.Load(source); ok {
		return source
	}
	if sourceCount.Load() >= maxSourceLabels {
		return otherSource
	}
	sourceLabels.Store(source, struct{}{})
	sourceCount.Add(1)
	return source
}

// countRuleError counts a rule that could not be evaluated.
func countRuleError(route string) {
	initMetrics()
	metrics.ruleErrors.WithLabelValues(route).Inc()
}
