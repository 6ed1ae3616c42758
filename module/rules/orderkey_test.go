package rules

import (
	"strings"
	"testing"

	"github.com/hookgate/hookgate/persist"
)

func TestOrderKey(t *testing.T) {
	ev := &persist.Event{ID: "evt_1", Type: "t", Data: []byte(`{"customer_id":"C-7","n":42.0,"i":7,"flag":true,"obj":{},"long":"` + strings.Repeat("x", 300) + `","empty":""}`)}
	tests := []struct {
		expr, want string
		err        bool
	}{
		{"*", "*", false},
		{"event.data.customer_id", "C-7", false},
		{"event.data.n", "42", false},
		{"event.data.flag", "true", false},
		{"event.type + ':' + event.data.customer_id", "t:C-7", false},
		{"event.data.missing", "*", true},
		{"event.data.obj", "*", true},
		{"event.data.empty", "*", false},
	}
	for _, tc := range tests {
		o, err := CompileOrderKey("r", tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		got, err := o.Key(NewEvent(ev))
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("%s: key %q, %v; want %q, error %v", tc.expr, got, err, tc.want, tc.err)
		}
	}
	o, _ := CompileOrderKey("r", "event.data.long")
	if k, _ := o.Key(NewEvent(ev)); !strings.HasPrefix(k, "sha256:") || len(k) != 7+64 || len(k) > persist.MaxOrderKeyLen {
		t.Errorf("long key kept as %q", k)
	}
	if o, err := CompileOrderKey("r", ""); o != nil || err != nil {
		t.Errorf(`CompileOrderKey("") = %v, %v`, o, err)
	}
	for _, bad := range []string{"event.data.", "{'a': 1}", "[1, 2]", "event.data.x == 1 ? {'a': 1} : {'b': 2}"} {
		if _, err := CompileOrderKey("r", bad); err == nil || !strings.Contains(err.Error(), "route r: ordered") {
			t.Errorf("CompileOrderKey(%q) = %v, want an error naming the route", bad, err)
		}
	}
}
