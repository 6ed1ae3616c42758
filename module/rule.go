package module

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/hookgate/hookgate/persist"
)

// celEnv is the one CEL environment rules and transforms compile in: a
// single variable `event` with id, type, source, time, data and headers.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(cel.Variable("event", cel.MapType(cel.StringType, cel.DynType)))
})

// compileCEL compiles expr and checks its result type against want
// (nil: any of map, list or string, as a transform must return).
func compileCEL(route, what, expr string, wantBool bool) (cel.Program, error) {
	env, err := celEnv()
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		// The issue text carries the position (line:column) and a caret.
		return nil, fmt.Errorf("route %s: %s: %s", route, what, strings.TrimSpace(iss.Err().Error()))
	}
	out := ast.OutputType()
	if wantBool {
		if !out.IsExactType(types.BoolType) {
			return nil, fmt.Errorf("route %s: %s: the expression gives %s, want bool (compare a field, e.g. event.data.flag == true)", route, what, out)
		}
	} else if !out.IsExactType(types.StringType) && !out.IsExactType(types.DynType) &&
		out.Kind() != types.MapKind && out.Kind() != types.ListKind {
		return nil, fmt.Errorf("route %s: %s: the expression gives %s, want a map, a list or a string", route, what, out)
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("route %s: %s: %v", route, what, err)
	}
	return prg, nil
}

// celEvent is an event as CEL sees it. data is parsed from JSON once and
// shared by every rule of every route the event meets.
type celEvent struct {
	ev     *persist.Event
	parsed bool
	data   any
	err    error
	vars   map[string]any
}

func newCELEvent(ev *persist.Event) *celEvent { return &celEvent{ev: ev} }

// value parses the event's data on first use.
func (c *celEvent) value() (any, error) {
	if !c.parsed {
		c.parsed = true
		c.err = json.Unmarshal(c.ev.Data, &c.data)
	}
	return c.data, c.err
}

func (c *celEvent) activation() (map[string]any, error) {
	if c.vars != nil {
		return c.vars, nil
	}
	data, err := c.value()
	if err != nil {
		return nil, err
	}
	headers := c.ev.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	c.vars = map[string]any{"event": map[string]any{
		"id":      c.ev.ID,
		"type":    c.ev.Type,
		"source":  c.ev.Source,
		"time":    c.ev.Time,
		"data":    data,
		"headers": headers,
	}}
	return c.vars, nil
}

// rule is a compiled `when`.
type rule struct {
	prg    cel.Program
	errors atomic.Uint64 // evaluations that failed (no match)
	// lastLog is when an evaluation error was last logged (unix ns), so
	// each route logs at most one a minute.
	lastLog atomic.Int64
}

// eval reports whether the event passes; an error counts as no match and
// is returned for counting and logging.
func (r *rule) eval(c *celEvent) (bool, error) {
	vars, err := c.activation()
	if err != nil {
		r.errors.Add(1)
		return false, err
	}
	out, _, err := r.prg.Eval(vars)
	if err != nil {
		r.errors.Add(1)
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		r.errors.Add(1)
		return false, fmt.Errorf("rule gave %s, not a bool", out.Type())
	}
	return bool(b), nil
}

// shouldLog reports whether an evaluation error may be logged now.
func (r *rule) shouldLog(now time.Time) bool {
	last := r.lastLog.Load()
	if now.UnixNano()-last < int64(time.Minute) {
		return false
	}
	return r.lastLog.CompareAndSwap(last, now.UnixNano())
}

// transform is a compiled `transform`.
type transform struct {
	prg         cel.Program
	contentType string // for string results
}

var structValueType = reflect.TypeOf(&structpb.Value{})

// body evaluates the transform: the bytes to send and their content type.
func (t *transform) body(c *celEvent) ([]byte, string, error) {
	vars, err := c.activation()
	if err != nil {
		return nil, "", fmt.Errorf("event data is not JSON: %v", err)
	}
	out, _, err := t.prg.Eval(vars)
	if err != nil {
		return nil, "", err
	}
	return celBody(out, t.contentType)
}

func celBody(out ref.Val, contentType string) ([]byte, string, error) {
	if s, ok := out.(types.String); ok {
		return []byte(s), contentType, nil
	}
	switch out.Type() {
	case types.MapType, types.ListType:
	default:
		return nil, "", fmt.Errorf("transform gave %s, want a map, a list or a string", out.Type())
	}
	native, err := out.ConvertToNative(structValueType)
	if err != nil {
		return nil, "", err
	}
	b, err := json.Marshal(native.(*structpb.Value).AsInterface())
	return b, "application/json", err
}
