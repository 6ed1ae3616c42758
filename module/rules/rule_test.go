package rules

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/hookgate/hookgate/persist"
)

func TestRuleEval(t *testing.T) {
	ev := &persist.Event{ID: "evt_1", Type: "task.done", Headers: map[string]string{"x-a": "1"},
		Data: []byte(`{"flow":"Delivery","priority":"High","items":[1,2,3]}`)}
	tests := []struct {
		expr    string
		want    bool
		wantErr bool
	}{
		{`event.data.flow == "Delivery" && event.data.priority == "High"`, true, false},
		{`event.data.priority == "Low"`, false, false},
		{`event.type.startsWith("task.") && event.headers["x-a"] == "1"`, true, false},
		{`event.data.items.exists(x, x == 3)`, true, false},
		{`event.data.missing == 1`, false, true},
	}
	for _, tc := range tests {
		r, err := CompileRule("r", tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		got, err := r.Eval(NewEvent(ev))
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%s: %v, %v; want %v, error %v", tc.expr, got, err, tc.want, tc.wantErr)
		}
	}
	r, _ := CompileRule("r", `event.type == "x"`)
	if ok, err := r.Eval(NewEvent(&persist.Event{Data: []byte("{not json")})); ok || err == nil {
		t.Errorf("data that is not JSON: %v, %v; want no match and an error", ok, err)
	}
}

func TestCompileErrorsNameTheRoute(t *testing.T) {
	for expr, want := range map[string]string{
		`event.data.x ==`:  "route erp: when: ",
		`event.data.x`:     "want bool",
		`1 + "a"`:          "route erp: when: ",
		`event.data.x + 1`: "want bool",
		// event is typed: a misspelt field or a comparison of the wrong
		// types fails at load, not silently at every event.
		`event.dta.flow == "x"`:  "undefined field 'dta'",
		`event.type == 1`:        "no matching overload",
		`event.headers["a"] > 1`: "no matching overload",
	} {
		if _, err := CompileRule("erp", expr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CompileRule(%q) = %v, want an error with %q", expr, err, want)
		}
	}
	if _, err := CompileTransform("erp", `1 + 2`, ""); err == nil || !strings.Contains(err.Error(), "route erp: transform: the expression gives int, want a map, a list or a string") {
		t.Errorf("transform giving an int: %v", err)
	}
	// The event itself, or inside a map, is sent as a JSON object.
	ev := NewEvent(&persist.Event{ID: "e1", Type: "t.x", Source: "/events", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Data: []byte(`{"a":1}`)})
	for expr, want := range map[string]string{
		`event`:        `{"data":{"a":1},"headers":{},"id":"e1","source":"/events","time":"2026-01-02T03:04:05Z","type":"t.x"}`,
		`{"e": event}`: `{"e":{"data":{"a":1},"headers":{},"id":"e1","source":"/events","time":"2026-01-02T03:04:05Z","type":"t.x"}}`,
	} {
		tr, err := CompileTransform("erp", expr, "")
		if err != nil {
			t.Errorf("transform %s: %v", expr, err)
			continue
		}
		if b, ct, err := tr.Body(ev); err != nil || string(b) != want || ct != "application/json" {
			t.Errorf("transform %s: %s %s %v, want %s", expr, b, ct, err, want)
		}
	}
}

// Data holding a number no double can hold (valid JSON) is refused with
// that reason by rules, transforms and placeholders alike.
func TestDataBeyondDouble(t *testing.T) {
	ev := NewEvent(&persist.Event{ID: "e", Type: "t", Data: []byte(`{"a":"x","e":1E400}`)})
	const want = "the number 1E400, beyond what a double can hold"
	r, _ := CompileRule("r", `event.data.a == "x"`)
	if ok, err := r.Eval(ev); ok || err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("rule: %v, %v; want false and an error with %q", ok, err, want)
	}
	tr, _ := CompileTransform("r", `{"a": event.data.a}`, "")
	if _, _, err := tr.Body(ev); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("transform: %v; want an error with %q", err, want)
	}
	tm, _ := ParseTemplate("{event.data.a}", false)
	if _, err := tm.Expand(ev, caddy.NewReplacer()); err == nil || !strings.Contains(err.Error(), "{event.data.a}: event data cannot be read: it holds "+want) {
		t.Errorf("placeholder: %v; want an error naming it and %q", err, want)
	}
}

func TestTransformBody(t *testing.T) {
	ev := &persist.Event{ID: "evt_1", Data: []byte(`{"task_id":"T-1","n":2}`)}
	tests := []struct {
		expr, ct, wantBody, wantCT string
	}{
		{`{"text": "task " + event.data.task_id}`, "", `{"text":"task T-1"}`, "application/json"},
		{`[event.data.n, event.id]`, "", `[2,"evt_1"]`, "application/json"},
		{`"task " + event.data.task_id`, "", "task T-1", "text/plain; charset=utf-8"},
		{`"<a/>"`, "application/xml", "<a/>", "application/xml"},
	}
	for _, tc := range tests {
		tr, err := CompileTransform("r", tc.expr, tc.ct)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		body, ct, err := tr.Body(NewEvent(ev))
		if err != nil || string(body) != tc.wantBody || ct != tc.wantCT {
			t.Errorf("%s: %q %q %v; want %q %q", tc.expr, body, ct, err, tc.wantBody, tc.wantCT)
		}
	}
	tr, _ := CompileTransform("r", `event.data.n`, "")
	if _, _, err := tr.Body(NewEvent(ev)); err == nil || !strings.Contains(err.Error(), "want a map, a list or a string") {
		t.Errorf("transform giving a double at run time: %v", err)
	}
}

// An event a sender shapes can make a rule loop: a nested all() over
// 2,000 items is 4 million steps (over a second of CPU). The cost limit
// stops it, as no match, and leaves ordinary rules alone.
func TestCostLimit(t *testing.T) {
	ev := &persist.Event{ID: "evt_1", Data: []byte(`{"flow":"Delivery","items":[1` + strings.Repeat(",1", 1999) + `]}`)}
	e := NewEvent(ev)
	const loop = `event.data.items.all(x, event.data.items.all(y, x == y))`

	r, err := CompileRule("r", loop)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := r.Eval(e); ok || err == nil || !strings.Contains(err.Error(), "cost limit of 100000") {
		t.Errorf("nested loop rule: %v, %v; want no match and a cost-limit error", ok, err)
	}
	tr, err := CompileTransform("r", `{"all": `+loop+`}`, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tr.Body(e); err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Errorf("nested loop transform: %v, want a cost-limit error", err)
	}
	o, err := CompileOrderKey("r", `string(`+loop+`)`)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := o.Key(e); k != OrderAll || err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Errorf("nested loop order key: %q, %v; want %q and a cost-limit error", k, err, OrderAll)
	}

	// One pass over the same list, and the usual field comparisons, are
	// well within the limit.
	for _, expr := range []string{
		`event.data.flow == "Delivery" && event.data.items.size() == 2000`,
		`event.data.items.all(x, x == 1)`,
		`event.data.items.exists(x, x == 2) || event.data.items.filter(x, x == 1).size() == 2000`,
	} {
		r, err := CompileRule("r", expr)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := r.Eval(e); !ok || err != nil {
			t.Errorf("%s: %v, %v; want a match", expr, ok, err)
		}
	}
}

// Raw bytes kept as data_base64 are CEL bytes: rules can test them, and
// templates cannot mistake them for JSON.
func TestRuleOnRawBytes(t *testing.T) {
	ev := &persist.Event{Type: "upload", Data: []byte("caf\xe9\xff"), DataBase64: true}
	for expr, want := range map[string]bool{
		`size(event.data) == 5`:        true,
		`event.data == b"caf\xe9\xff"`: true,
		`type(event.data) == bytes`:    true,
		`type(event.data) == map`:      false,
	} {
		r, err := CompileRule("r", expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if got, _ := r.Eval(NewEvent(ev)); got != want {
			t.Errorf("%s = %v, want %v", expr, got, want)
		}
	}
}
