package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// TestEgressAllowOnly: on a real Caddy, a policy with allow_only delivers
// to the listed loopback address and refuses an unlisted one, with no
// connection at its sink and a refusal that names the rule and the
// policy, in the log and in the attempt record.
func TestEgressAllowOnly(t *testing.T) {
	listed, listedConns := newConnSink(t, "127.0.0.1:0", nil)
	unlisted, unlistedConns := newConnSink(t, "127.0.0.2:0", nil)
	logFile := filepath.Join(t.TempDir(), "log.json")
	g := startGateway(t, egressConfig(logFile, `
		egress only {
			allow_only 127.0.0.1/32 partner.example *.partner.example
		}
		route listed {
			topics t.listed
			url `+listed.URL+`/listed
			egress only
		}
		route unlisted {
			topics t.unlisted
			url `+unlisted.URL+`/unlisted
			egress only
			retry {
				schedule 100ms
			}
		}`))
	refused := postEvent(t, g, "t.unlisted")
	delivered := postEvent(t, g, "t.listed")

	dead := waitLogged(t, logFile, "delivery dead", "unlisted")
	listed.waitFor(t, 1, 10*time.Second)
	time.Sleep(200 * time.Millisecond) // a retry of the refused one would come within 100ms
	const rule = `127.0.0.2: not in allow_only (egress policy "only")`
	if dead["class"] != "egress_denied" || !strings.Contains(fmt.Sprint(dead["error"]), rule) {
		t.Errorf("log entry %v, want class egress_denied and an error with %q", dead, rule)
	}
	if n := unlistedConns.Load(); n != 0 || len(unlisted.requests()) != 0 {
		t.Errorf("the unlisted sink accepted %d connections", n)
	}
	if n := listedConns.Load(); n != 1 {
		t.Errorf("the listed sink accepted %d connections, want 1", n)
	}

	g.stop()
	d := onlyDelivery(t, g.storage, refused)
	if d.Status != persist.StatusDead || d.Attempts != 1 || d.LastClass != "egress_denied" || !strings.Contains(d.LastError, rule) {
		t.Errorf("unlisted delivery %+v", d)
	}
	if d := onlyDelivery(t, g.storage, delivered); d.Status != persist.StatusDelivered {
		t.Errorf("listed delivery %+v", d)
	}
}
