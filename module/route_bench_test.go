package module

import (
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/module/rules"
	"github.com/hookgate/hookgate/persist"
)

// benchEvent is a ~1 KB event like the load harness sends.
func benchEvent() *persist.Event {
	return &persist.Event{
		ID: "evt_bench", Type: "task.finished", Time: time.Unix(1795400000, 0),
		Data: []byte(`{"task_id":"T-1","flow":"Delivery","priority":"High","tenant":"acme/eu","tags":["a","urgent"],"pad":"` +
			strings.Repeat("x", 850) + `"}`),
	}
}

func benchRoute(b *testing.B, rc *Route) *route {
	b.Helper()
	if rc.Topics == nil {
		rc.Topics = []string{"task.*"}
	}
	if rc.URL == "" {
		rc.URL = "https://erp.example.com/api"
	}
	r, err := compileRoute("bench", rc)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkMatchAndSign is what a simple rule plus Standard Webhooks
// signing add per delivery: topic match, rule (data parsed), signature of
// the 1 KB envelope.
func BenchmarkMatchAndSign(b *testing.B) {
	r := benchRoute(b, &Route{
		When: `event.data.priority == "High"`,
		Sign: &SignConfig{Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
	})
	ev := benchEvent()
	body := envelope(ev)
	h := make(map[string][]string, 4)
	b.ReportAllocs()
	for b.Loop() {
		if !r.matches(ev.Type) {
			b.Fatal("no match")
		}
		if ok, err := r.when.Eval(rules.NewEvent(ev)); !ok || err != nil {
			b.Fatal(ok, err)
		}
		r.signer.Sign(h, ev.ID, 1795400000, body)
	}
}

// BenchmarkEnvelope is the standard body of a 1 KB event.
func BenchmarkEnvelope(b *testing.B) {
	ev := benchEvent()
	ev.ID = "evt_01jdq7y7m2x9k3v5w8z0a1b2c3"
	b.ReportAllocs()
	for b.Loop() {
		envelope(ev)
	}
}
