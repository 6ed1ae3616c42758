package console_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/hookgate/hookgate/persist"
)

// The console in a real browser: headless Chromium (the Debian package)
// driven over the DevTools protocol. It loads the overview, follows a
// delivery to its event page, presses retry, pause and "send test
// event", and sees the results and a live update arrive without a reload. A screenshot of
// each page goes to $HOOKGATE_SCREENSHOTS (default: a directory in the
// system's temporary directory) for a person to look at.

// chromium finds the browser: $HOOKGATE_CHROMIUM, else the usual names.
func chromium() string {
	if p := os.Getenv("HOOKGATE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func shotsDir(t *testing.T) string {
	dir := os.Getenv("HOOKGATE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "hookgate-console-shots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestConsoleInBrowser(t *testing.T) {
	bin := chromium()
	if bin == "" {
		const why = "no Chromium: install the Debian package (apt-get install chromium) or set HOOKGATE_CHROMIUM to a Chrome or Chromium binary"
		if os.Getenv("CI") == "true" {
			t.Fatal(why + "; CI must run the browser test")
		}
		t.Skip(why)
	}
	g := startGateway(t, gatewayOptions{})
	ids := g.accept(2, nil)
	crm := g.deliveryOf(ids[0], "crm")
	for _, id := range ids {
		g.waitStatus(g.deliveryOf(id, "crm"), persist.StatusDead)
		g.waitStatus(g.deliveryOf(id, "erp"), persist.StatusDelivered)
	}
	shots := shotsDir(t)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Only loopback: every other host name fails to resolve.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	// Start the browser with no deadline (a deadline on the first run
	// would bind the browser's life to it), then bound the test.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()

	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	shot := func(name string) {
		t.Helper()
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(shots, name+".png")
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", p)
	}
	waitFor := func(what, expr string) {
		t.Helper()
		run(what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
	}

	// alice's credentials go with every request, EventSource included.
	run("sending credentials", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
			Headers: network.Headers{"Authorization": basicAuth()},
		})
		return err
	}))

	// The overview: both routes with their charts.
	run("loading the overview", chromedp.Navigate(g.origin+"/console/"), chromedp.WaitVisible(chromedp.CSS("#route-crm svg.chart")))
	if title, _ := chromedp.Run(ctx, chromedp.Title()); title != "Routes · hookgate console" {
		t.Errorf("overview title %q", title)
	}
	// The keyboard's first stop is the skip link.
	run("tabbing", chromedp.KeyEvent("\t"))
	waitFor("focus on the skip link", `document.activeElement && document.activeElement.classList.contains("skip")`)
	shot("1-overview")

	// Follow crm's dead count to its deliveries, then the first to its event.
	run("opening crm's dead deliveries", chromedp.Click(chromedp.CSS(`#route-crm a[href*="status=dead"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a.id[href*="#d-`+crm+`"]`)))
	waitFor("the live stream", `document.querySelector("[data-live-state=on]") !== null`)
	shot("2-deliveries")
	run("opening the event", chromedp.Click(chromedp.CSS(`a.id[href*="#d-`+crm+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#d-"+crm)))
	if h := text("h1"); !strings.Contains(h, ids[0]) {
		t.Fatalf("event page heading %q, want the event id %s", h, ids[0])
	}
	shot("3-event")

	// Retry the dead delivery. The endpoint holds its answer until the
	// page is back and listening, so the outcome arrives live.
	g.hold.Store(true)
	run("pressing retry", chromedp.Click(chromedp.CSS("#d-"+crm+" form.actions button")),
		chromedp.WaitVisible(chromedp.CSS("#notice")))
	if n := text("#notice"); !strings.Contains(n, "Delivery "+crm+" is queued to be sent now (it was dead).") {
		t.Fatalf("notice after retry: %q", n)
	}
	waitFor("the live stream", `document.querySelector("[data-live-state=on]") !== null`)
	close(g.release)
	waitFor("the live outcome", `document.querySelector("#live-rows tr") !== null`)
	if row := text("#live-rows tr"); !strings.Contains(row, crm) || !strings.Contains(row, "dead") || !strings.Contains(row, "500") {
		t.Fatalf("live row %q, want crm's attempt, dead with 500", row)
	}
	shot("4-event-after-retry")

	// Pause erp from the overview.
	run("back to the overview", chromedp.Click(chromedp.CSS(`header.top nav a[href$="/console/"]`)),
		chromedp.WaitVisible(chromedp.CSS("#route-erp")))
	run("pressing pause", chromedp.Click(chromedp.CSS(`#route-erp form[action$="/pause"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#notice")), chromedp.WaitVisible(chromedp.CSS("#route-erp .state-paused")))
	if n := text("#notice"); !strings.Contains(n, "Route erp is paused") {
		t.Fatalf("notice after pause: %q", n)
	}
	if st := routeState(g, "erp"); st != "paused" {
		t.Fatalf("erp is %s after pressing pause", st)
	}
	shot("5-overview-paused")

	// A test event to erp goes out even while it is paused.
	before := g.okHits.Load()
	run("pressing send test event", chromedp.Click(chromedp.CSS(`#route-erp form[action$="/send"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#send-result")))
	if r := text("#send-result"); !strings.Contains(r, "The endpoint accepted the test event: HTTP 200") {
		t.Fatalf("test send result %q", r)
	}
	if g.okHits.Load() != before+1 {
		t.Fatalf("the endpoint got %d requests from the test send, want 1", g.okHits.Load()-before)
	}
	shot("5b-send-test-event")

	// The deliveries view follows new outcomes without a reload.
	run("opening the deliveries", chromedp.Navigate(g.origin+"/console/deliveries"), chromedp.WaitVisible(chromedp.CSS(".scroll table.list")))
	waitFor("the live stream", `document.querySelector("[data-live-state=on]") !== null`)
	fresh := g.accept(1, nil)
	waitFor("a live row for the new event", `Array.from(document.querySelectorAll("#live-rows a")).some(a => a.href.includes("/events/`+fresh[0]+`"))`)
	shot("6-deliveries-live")

	// And on a phone.
	run("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)), chromedp.Navigate(g.origin+"/console/"),
		chromedp.WaitVisible(chromedp.CSS("#route-erp")))
	noSideScroll := func(page string) {
		t.Helper()
		w, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`))
		if err != nil {
			t.Fatal(err)
		}
		if w[0] > w[1] {
			t.Errorf("%s on a phone: %d px wide in a viewport of %d: it scrolls sideways", page, w[0], w[1])
		}
	}
	noSideScroll("overview")
	shot("7-overview-phone")
	run("phone event page", chromedp.Navigate(g.origin+"/console/events/"+ids[0]), chromedp.WaitVisible(chromedp.CSS("#d-"+crm)))
	noSideScroll("event page")
	shot("8-event-phone")
	run("phone deliveries", chromedp.Navigate(g.origin+"/console/deliveries"), chromedp.WaitVisible(chromedp.CSS(".scroll table.list")))
	noSideScroll("deliveries")
	shot("9-deliveries-phone")

	// A console without auth says so; an unknown event says why.
	run("laptop viewport", chromedp.EmulateViewport(1280, 900))
	run("open console", chromedp.Navigate(g.origin+"/open/"), chromedp.WaitVisible(chromedp.CSS(".banner.warn")))
	shot("10-open-console-warning")
	run("unknown event", chromedp.Navigate(g.origin+"/console/events/evt_gone"), chromedp.WaitVisible(chromedp.CSS("h1")))
	if h := text("h1"); h != "No such event" {
		t.Errorf("unknown event heading %q", h)
	}
	shot("11-unknown-event")
}
