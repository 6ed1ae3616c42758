package console_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// TestPagesOverALargeOutbox renders every page over an outbox of
// 100,000 pending deliveries and logs how long each took (measured, not
// asserted: the machine running the tests decides). Each page reads
// what it shows through the indexes, so none should grow with the
// outbox.
func TestPagesOverALargeOutbox(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 100,000 events; skipped with -short")
	}
	const total, batch = 100_000, 1000
	g := startGateway(t, gatewayOptions{extraRoutes: `
		route bulk {
			topics bulk.*
			url http://127.0.0.1:9/never
		}
`})
	if err := g.eng.SetPaused("bulk", true); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	var first, last string
	for i := 0; i < total; i += batch {
		evs := make([]*persist.Event, batch)
		for j := range evs {
			evs[j] = &persist.Event{Type: "bulk.item", Data: []byte(fmt.Sprintf(`{"n":%d}`, i+j))}
		}
		res, err := g.eng.Accept(context.Background(), evs)
		if err != nil {
			t.Fatalf("accepting events %d-: %v", i, err)
		}
		if i == 0 {
			first = res[0].ID
		}
		last = res[len(res)-1].ID
	}
	t.Logf("stored %d events with a delivery each in %v", total, time.Since(began).Round(time.Millisecond))
	if st := routeStats(g, "bulk"); st != total {
		t.Fatalf("bulk has %d pending, want %d", st, total)
	}

	timed := func(name, path string, want int) answer {
		t.Helper()
		// The first render warms caches; report the second.
		g.get(path, true)
		start := time.Now()
		a := g.get(path, true)
		t.Logf("%-40s %8v  %6d bytes", name, time.Since(start).Round(10*time.Microsecond), len(a.body))
		if a.status != want {
			t.Fatalf("%s: HTTP %d, want %d\n%s", name, a.status, want, clip(a.body))
		}
		return a
	}
	ov := timed("overview", "/console/", http.StatusOK)
	mustContain(t, "overview", ov.body, `id="route-bulk"`, ">100000<")
	p1 := timed("deliveries, bulk pending, page 1", "/console/deliveries?route=bulk&status=pending", http.StatusOK)
	next := regexp.MustCompile(`href="([^"]+)" rel="next"`).FindStringSubmatch(p1.body)
	if next == nil {
		t.Fatal("no next page link on a listing of 100,000")
	}
	if n := strings.Count(p1.body, `<a class="id" href=`); n != 50 {
		t.Fatalf("page 1 lists %d deliveries, want 50", n)
	}
	timed("deliveries, bulk pending, page 2", strings.ReplaceAll(next[1], "&amp;", "&"), http.StatusOK)
	timed("deliveries, every state, page 1", "/console/deliveries", http.StatusOK)
	timed("deliveries, dead (none)", "/console/deliveries?status=dead", http.StatusOK)
	timed("event page (first event)", "/console/events/"+first, http.StatusOK)
	timed("event page (last event)", "/console/events/"+last, http.StatusOK)
	timed("id search (last event)", "/console/deliveries?id="+last, http.StatusSeeOther)
	timed("id search (unknown)", "/console/deliveries?id=evt_nothing", http.StatusNotFound)
}

func routeStats(g *gateway, route string) int64 {
	for _, st := range g.eng.Stats() {
		if st.Route == route {
			return st.Pending
		}
	}
	return -1
}
