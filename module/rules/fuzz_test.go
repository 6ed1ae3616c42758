package rules

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/hookgate/hookgate/persist"
)

// FuzzTemplate parses arbitrary templates and expands them over
// arbitrary event data and source: it must never panic, and in a URL no
// control character (CR, LF, NUL…) may come out that the template did
// not hold itself, since event values are escaped there. In a header,
// values pass through as they are: delivery checks the built request and
// refuses a header value with a control character (invalid_request), so
// the header seeds here only check that expansion survives them. Global
// placeholders come from an empty Replacer, so the fuzzer reads no
// environment or file.
func FuzzTemplate(f *testing.F) {
	f.Add("https://x.example/{event.data.a}?q={event.data.b[0]}#{event.id}", true, []byte(`{"a":"x/y z","b":["?&="]}`), "/events")
	f.Add("Bearer {env.TOKEN} {event.data.a.b}", false, []byte(`{"a":{"b":1.5e300}}`), "/github")
	f.Add("{event.data.a}", false, []byte(`{"a":"x\r\nX-Evil: 1"}`), "")
	f.Add("{event.source}", false, []byte(`null`), "/in\r\nX-Evil: 1")
	f.Add("{event.data.0}{event.time}{ x}{", true, []byte(`[{"k":null}]`), "")
	f.Add("{event.data.a}", false, []byte(`{"a":`), "")
	repl := caddy.NewEmptyReplacer()
	f.Fuzz(func(t *testing.T, tmpl string, isURL bool, data []byte, source string) {
		tm, err := ParseTemplate(tmpl, isURL)
		if err != nil {
			return
		}
		ev := &persist.Event{ID: "evt_1", Type: "a.b", Source: source, Time: time.Unix(1795400000, 0), Data: data}
		out, err := tm.Expand(NewEvent(ev), repl)
		if err != nil {
			return
		}
		if isURL && !strings.ContainsFunc(tmpl, isControl) && strings.ContainsFunc(out, isControl) {
			t.Fatalf("URL template %q expanded to %q: a control character from the event", tmpl, out)
		}
	})
}

// isControl reports the characters an HTTP header or request line cannot
// hold (tab aside).
func isControl(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }

// FuzzRuleEval compiles arbitrary expressions as a rule, a transform and
// an order key and evaluates them over arbitrary data: compiling may
// fail, evaluating may fail (no match), but nothing panics, and the cost
// limit keeps each evaluation short.
func FuzzRuleEval(f *testing.F) {
	f.Add(`event.data.flow == "Delivery" && event.data.priority == "High"`, []byte(`{"flow":"Delivery","priority":"High"}`))
	f.Add(`event.data.items.all(x, event.data.items.all(y, x == y))`, []byte(`{"items":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}`))
	f.Add(`{"t": event.time, "b": b"\xff", "d": duration("1s")}`, []byte(`{}`))
	f.Add(`[event.data.n / 0.0, event.data.n]`, []byte(`{"n":1}`))
	f.Add(`{1: event.data, true: event.headers}`, []byte(`[1,"a",null,{"k":[]}]`))
	f.Add(`event.data.s.matches(event.data.re)`, []byte(`{"s":"aaaa","re":"(a+)+$"}`))
	f.Add(`event.data`, []byte(`"text"`))
	f.Add(`event.data.x`, []byte(`{"x":`))
	f.Fuzz(func(t *testing.T, expr string, data []byte) {
		if len(expr) > 1000 || len(data) > 10000 {
			return
		}
		ev := &persist.Event{ID: "evt_1", Type: "a.b", Time: time.Unix(1795400000, 0), Data: data,
			Headers: map[string]string{"x-a": "1"}}
		e := NewEvent(ev)
		if r, err := CompileRule("f", expr); err == nil {
			if ok, err := r.Eval(e); ok && err != nil {
				t.Fatalf("%s: a match with an error: %v", expr, err)
			}
		}
		if tr, err := CompileTransform("f", expr, ""); err == nil {
			tr.Body(e)
		}
		if o, err := CompileOrderKey("f", expr); err == nil && o != nil {
			k, err := o.Key(e)
			if k == "" || len(k) > maxOrderKey || (err != nil && k != OrderAll) {
				t.Fatalf("%s: key %q, %v", expr, k, err)
			}
		}
	})
}
