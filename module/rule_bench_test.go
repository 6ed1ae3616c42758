package module

import (
	"strings"
	"testing"
	"time"

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

// BenchmarkRuleEval is one `when` per event, including parsing the data
// (which ingest does once per event, whatever the number of routes).
func BenchmarkRuleEval(b *testing.B) {
	r := benchRoute(b, &Route{When: `event.data.flow == "Delivery" && event.data.priority == "High"`})
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		ok, err := r.when.eval(newCELEvent(ev))
		if !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkRuleEvalParsed is the rule alone, data already parsed (the
// cost of each further route with a rule).
func BenchmarkRuleEvalParsed(b *testing.B) {
	r := benchRoute(b, &Route{When: `event.data.flow == "Delivery" && event.data.priority == "High"`})
	c := newCELEvent(benchEvent())
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := r.when.eval(c); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkTransform(b *testing.B) {
	r := benchRoute(b, &Route{Transform: `{"text": "High-priority task " + event.data.task_id}`})
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.transform.body(newCELEvent(ev)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlaceholderURL(b *testing.B) {
	r := benchRoute(b, &Route{URL: "https://erp.example.com/api/{event.data.tenant}/tasks/{event.data.task_id}?id={event.id}"})
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.url.expand(newCELEvent(ev), globals); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlaceholderHeaderEnv(b *testing.B) {
	b.Setenv("HOOKGATE_BENCH_TOKEN", "t0ken")
	r := benchRoute(b, &Route{Headers: map[string][]string{"Authorization": {"Bearer {env.HOOKGATE_BENCH_TOKEN}"}}})
	c := newCELEvent(benchEvent())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.headers[0].value.expand(c, globals); err != nil {
			b.Fatal(err)
		}
	}
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
		if ok, err := r.when.eval(newCELEvent(ev)); !ok || err != nil {
			b.Fatal(ok, err)
		}
		r.signer.Sign(h, ev.ID, 1795400000, body)
	}
}
