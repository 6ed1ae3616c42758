package module

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookgate/hookgate/persist"
)

// gatherSeries returns the value of each series of the named metric whose
// labels include match, keyed by its label values; histograms give their
// sample count.
func gatherSeries(t *testing.T, reg *prometheus.Registry, name string, match map[string]string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			key := ""
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
				key += lp.GetName() + "=" + lp.GetValue() + ","
			}
			for k, v := range match {
				if labels[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// Attempt and ingest metrics count what happened, and a series appears
// only once it has counted something.
func TestAttemptAndIngestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := registerMetrics(reg); err != nil {
		t.Fatal(err)
	}
	sink := newCountingSink(t, func(n int64) int {
		if n == 0 {
			return 400 // final: dead
		}
		return 200
	})
	te := startTestEngine(t, "", map[string]*Route{"metrics_route": {URL: sink.URL}}, nil)
	route := map[string]string{"route": "metrics_route"}
	post := func(source string) {
		t.Helper()
		if _, err := te.Accept(context.Background(), []*persist.Event{{Type: "test.event", Data: []byte(`1`), Source: source}}); err != nil {
			t.Fatal(err)
		}
	}

	// The collectors are process-wide: a series counts from what it
	// held when the test began (an earlier run of it, with -count, or
	// other tests' ingests), and one that counted nothing since is left
	// out.
	type seriesKey struct{ name, labels string }
	before := map[seriesKey]float64{}
	for _, name := range []string{"hookgate_deliveries_total", "hookgate_delivery_duration_seconds", "hookgate_events_ingested_total"} {
		for k, v := range gatherSeries(t, reg, name, nil) {
			before[seriesKey{name, k}] = v
		}
	}
	counted := func(name string, match map[string]string) map[string]float64 {
		out := map[string]float64{}
		for k, v := range gatherSeries(t, reg, name, match) {
			if d := v - before[seriesKey{name, k}]; d != 0 {
				out[k] = d
			}
		}
		return out
	}
	// The outbox timings: the counts before and after this test's four
	// ingests.
	outbox := func() (commit, sync, rounds float64) {
		w := gatherSeries(t, reg, "hookgate_outbox_ingest_wait_seconds", nil)
		r := gatherSeries(t, reg, "hookgate_outbox_sync_seconds", nil)
		return w["stage=commit,"], w["stage=sync,"], r[""]
	}
	commit0, sync0, rounds0 := outbox()

	post("metrics-src-a")
	waitUntil(t, "the dead delivery", func() bool { return te.stats("metrics_route").Dead == 1 })
	want := map[string]float64{"class=http_4xx,outcome=dead,route=metrics_route,": 1}
	check := func(when string, got, want map[string]float64) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: series %v, want %v", when, got, want)
			return
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: series %v, want %v", when, got, want)
				return
			}
		}
	}
	check("after a dead attempt", counted("hookgate_deliveries_total", route), want)
	check("after a dead attempt", counted("hookgate_delivery_duration_seconds", route), map[string]float64{"route=metrics_route,": 1})

	post("metrics-src-b")
	post("metrics-src-a")
	post("metrics-src-a")
	waitUntil(t, "three deliveries", func() bool { return te.stats("metrics_route").Delivered == 3 })
	want["class=,outcome=delivered,route=metrics_route,"] = 3
	check("after three deliveries", counted("hookgate_deliveries_total", route), want)
	check("after three deliveries", counted("hookgate_delivery_duration_seconds", route), map[string]float64{"route=metrics_route,": 4})
	check("ingested a", counted("hookgate_events_ingested_total", map[string]string{"source": "metrics-src-a"}), map[string]float64{"source=metrics-src-a,": 3})
	check("ingested b", counted("hookgate_events_ingested_total", map[string]string{"source": "metrics-src-b"}), map[string]float64{"source=metrics-src-b,": 1})

	commit1, sync1, rounds1 := outbox()
	if commit1-commit0 != 4 || sync1-sync0 != 4 {
		t.Errorf("outbox ingest waits counted: commit +%v, sync +%v; want +4 each", commit1-commit0, sync1-sync0)
	}
	// Each of the four ingests, made one after another, waited for a
	// round of its own.
	if rounds1-rounds0 < 4 {
		t.Errorf("outbox sync rounds counted: +%v, want at least +4", rounds1-rounds0)
	}
}

// The example Grafana dashboard queries only metrics hookgate exports, so
// a renamed or dropped metric cannot leave a panel silently empty.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	initMetrics()
	ch := make(chan *prometheus.Desc, 64)
	for _, c := range collectors() {
		c.Describe(ch)
	}
	close(ch)
	exported := map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			exported[m[1]] = true
		}
	}
	b, err := os.ReadFile("../examples/observability/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range regexp.MustCompile(`hookgate_[a-z_]+`).FindAllString(tg.Expr, -1) {
				queried++
				base := name
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(name, suffix); ok && exported[b] {
						base = b
					}
				}
				if !exported[base] {
					t.Errorf("panel %q queries %s, which hookgate does not export", p.Title, name)
				}
			}
		}
	}
	if queried == 0 {
		t.Fatal("the dashboard queries no hookgate metric: wrong file?")
	}
	// And every metric has a panel.
	for name := range exported {
		if !strings.Contains(string(b), name) {
			t.Errorf("no panel of the dashboard shows %s", name)
		}
	}
}

// The source label takes at most maxSourceLabels values; later sources
// are counted as "other", so that an inbound endpoint labelled by its
// request path cannot be made to grow time series without end.
func TestSourceLabelBounded(t *testing.T) {
	sourceLabels.Clear()
	sourceCount.Store(0)
	t.Cleanup(func() { sourceLabels.Clear(); sourceCount.Store(0) })
	for i := range maxSourceLabels {
		if got := sourceLabel(fmt.Sprintf("/hooks/c%d", i)); got != fmt.Sprintf("/hooks/c%d", i) {
			t.Fatalf("source %d labelled %q", i, got)
		}
	}
	if got := sourceLabel("/hooks/one-too-many"); got != otherSource {
		t.Errorf("source past the bound labelled %q, want %q", got, otherSource)
	}
	if got := sourceLabel("/hooks/c7"); got != "/hooks/c7" {
		t.Errorf("a source seen before labelled %q", got)
	}
	if n := sourceCount.Load(); n != maxSourceLabels {
		t.Errorf("count %d, want %d", n, maxSourceLabels)
	}
	// Names that are not paths (api, a configured source) keep theirs.
	for _, src := range []string{"api", "github"} {
		if got := sourceLabel(src); got != src {
			t.Errorf("source %q labelled %q once the paths filled the bound", src, got)
		}
	}
}
