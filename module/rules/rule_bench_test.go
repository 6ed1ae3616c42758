package rules

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

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

const benchRule = `event.data.flow == "Delivery" && event.data.priority == "High"`

// BenchmarkRuleEval is one `when` per event, including parsing the data
// (which ingest does once per event, whatever the number of routes).
func BenchmarkRuleEval(b *testing.B) {
	r, err := CompileRule("bench", benchRule)
	if err != nil {
		b.Fatal(err)
	}
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		ok, err := r.Eval(NewEvent(ev))
		if !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkRuleEvalParsed is the rule alone, data already parsed (the
// cost of each further route with a rule).
func BenchmarkRuleEvalParsed(b *testing.B) {
	r, err := CompileRule("bench", benchRule)
	if err != nil {
		b.Fatal(err)
	}
	e := NewEvent(benchEvent())
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := r.Eval(e); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkTransform(b *testing.B) {
	tr, err := CompileTransform("bench", `{"text": "High-priority task " + event.data.task_id}`, "")
	if err != nil {
		b.Fatal(err)
	}
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := tr.Body(NewEvent(ev)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlaceholderURL(b *testing.B) {
	tm, err := ParseTemplate("https://erp.example.com/api/{event.data.tenant}/tasks/{event.data.task_id}?id={event.id}", true)
	if err != nil {
		b.Fatal(err)
	}
	repl := caddy.NewReplacer()
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tm.Expand(NewEvent(ev), repl); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlaceholderHeaderEnv(b *testing.B) {
	b.Setenv("HOOKGATE_BENCH_TOKEN", "t0ken")
	tm, err := ParseTemplate("Bearer {env.HOOKGATE_BENCH_TOKEN}", false)
	if err != nil {
		b.Fatal(err)
	}
	repl := caddy.NewReplacer()
	e := NewEvent(benchEvent())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tm.Expand(e, repl); err != nil {
			b.Fatal(err)
		}
	}
}
