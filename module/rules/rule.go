package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
	"google.golang.org/protobuf/types/known/structpb"
)

// CostLimit is the most one evaluation of a rule, a transform or an order
// key may cost, in CEL's cost units: about one per field access,
// comparison or call, about six per element a comprehension (all,
// exists, map, filter) visits, and more for operations on long strings
// and lists. `event.data.flow == "Delivery" && event.data.priority ==
// "High"` costs 8; `exists` over a 2,000-element list about 12,000
// (under a millisecond). At the limit, about 5 ms of CPU, an evaluation
// stops with an error, so an event a sender shapes (a huge list, a nested
// loop over it) cannot hold the ingest request or a delivery worker: a
// rule counts it as no match (hookgate_rule_errors_total), a transform
// fails the delivery (bad_url), an order key falls back to "*".
const CostLimit = 100_000

// compile compiles expr in the event environment, has check judge the
// result type (it returns what is wrong, or "" when the type is fine),
// and builds its program, bounded by CostLimit. Errors name the
// route and the option (what), and carry CEL's line:column.
func compile(route, what, expr string, check func(*cel.Type) string) (cel.Program, error) {
	env, err := celEnv()
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		// The issue text carries the position (line:column) and a caret.
		return nil, fmt.Errorf("route %s: %s: %s", route, what, strings.TrimSpace(iss.Err().Error()))
	}
	if msg := check(ast.OutputType()); msg != "" {
		return nil, fmt.Errorf("route %s: %s: %s", route, what, msg)
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(CostLimit))
	if err != nil {
		return nil, fmt.Errorf("route %s: %s: %v", route, what, err)
	}
	return prg, nil
}

// run evaluates prg, and says in plain words when CostLimit stopped it.
func run(prg cel.Program, vars map[string]any) (ref.Val, error) {
	out, _, err := prg.Eval(vars)
	var cancelled interpreter.EvalCancelledError
	if errors.As(err, &cancelled) && cancelled.Cause == interpreter.CostLimitExceeded {
		return nil, errCostLimit
	}
	return out, err
}

// errCostLimit is what an evaluation stopped at CostLimit returns.
var errCostLimit = fmt.Errorf("the expression reached the cost limit of %d on this event (a loop over a large list?) and was stopped", CostLimit)

// Rule is a compiled `when`: a CEL expression over `event` that decides
// whether a route takes an event.
type Rule struct {
	prg cel.Program
}

// CompileRule compiles a route's `when` expression, which must give a
// bool. Errors name the route and carry the position in expr.
func CompileRule(route, expr string) (*Rule, error) {
	prg, err := compile(route, "when", expr, func(out *cel.Type) string {
		if !out.IsExactType(types.BoolType) {
			return fmt.Sprintf("the expression gives %s, want bool (compare a field, e.g. event.data.flag == true)", out)
		}
		return ""
	})
	if err != nil {
		return nil, err
	}
	return &Rule{prg: prg}, nil
}

// Eval reports whether the event passes. An error (data that is not
// JSON, a missing field, a result that is not a bool, CostLimit
// reached) comes with false: it counts as no match, and is returned for
// counting and logging.
func (r *Rule) Eval(e *Event) (bool, error) {
	vars, err := e.activation()
	if err != nil {
		return false, err
	}
	out, err := run(r.prg, vars)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("rule gave %s, not a bool", out.Type())
	}
	return bool(b), nil
}

// Transform is a compiled `transform`: a CEL expression whose result is
// the body sent instead of the standard envelope.
type Transform struct {
	prg         cel.Program
	contentType string // for string results
}

// defaultTextType types a transform's string result when the route names
// no content type.
const defaultTextType = "text/plain; charset=utf-8"

// CompileTransform compiles a route's `transform` expression, which must
// give a map, a list or a string. contentType types string results (""
// for text/plain; maps and lists are always sent as application/json).
func CompileTransform(route, expr, contentType string) (*Transform, error) {
	prg, err := compile(route, "transform", expr, func(out *cel.Type) string {
		if !out.IsExactType(types.StringType) && !out.IsExactType(types.DynType) &&
			out.Kind() != types.MapKind && out.Kind() != types.ListKind && out.String() != celEventType {
			return fmt.Sprintf("the expression gives %s, want a map, a list or a string", out)
		}
		return ""
	})
	if err != nil {
		return nil, err
	}
	if contentType == "" {
		contentType = defaultTextType
	}
	return &Transform{prg: prg, contentType: contentType}, nil
}

var structValueType = reflect.TypeOf(&structpb.Value{})

// Body evaluates the transform for an event: the bytes to send and their
// content type (application/json for a map or a list).
func (t *Transform) Body(e *Event) ([]byte, string, error) {
	vars, err := e.activation()
	if err != nil {
		return nil, "", err
	}
	out, err := run(t.prg, vars)
	if err != nil {
		return nil, "", err
	}
	return celBody(out, t.contentType)
}

func celBody(out ref.Val, contentType string) ([]byte, string, error) {
	if s, ok := out.(types.String); ok {
		return []byte(s), contentType, nil
	}
	switch t := out.Type(); {
	case t == types.MapType, t == types.ListType, t.TypeName() == celEventType:
		// `transform event` sends the event as an object.
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
