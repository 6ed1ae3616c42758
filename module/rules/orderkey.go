package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
)

// OrderAll is the order key of a route ordered as a whole, and of events
// whose key cannot be computed.
const OrderAll = "*"

// maxOrderKey is the longest key kept as it is; longer ones are replaced
// by their SHA-256, which keeps them apart at a fixed size.
const maxOrderKey = 200

// OrderKey is a compiled `ordered` option: it gives each event the key
// under which an ordered route delivers one at a time, in ingest order.
type OrderKey struct {
	prg cel.Program // nil: the whole route is one key
}

// CompileOrderKey compiles a route's `ordered` option: "" (nil, nil: the
// route is unordered), "*" (the whole route is one sequence), or a CEL
// expression over event whose result is a string, a number or a bool.
func CompileOrderKey(route, expr string) (*OrderKey, error) {
	expr = strings.TrimSpace(expr)
	switch expr {
	case "":
		return nil, nil
	case OrderAll:
		return &OrderKey{}, nil
	}
	prg, err := compile(route, "ordered", expr, func(out *cel.Type) string {
		switch {
		case out.IsExactType(types.StringType), out.IsExactType(types.DynType),
			out.IsExactType(types.IntType), out.IsExactType(types.UintType),
			out.IsExactType(types.DoubleType), out.IsExactType(types.BoolType):
			return ""
		}
		return fmt.Sprintf("the key expression gives %s, want a string (e.g. event.data.customer_id)", out)
	})
	if err != nil {
		return nil, err
	}
	return &OrderKey{prg: prg}, nil
}

// Key returns the event's order key: the expression's result as text,
// OrderAll when it is empty, and "sha256:" and the hex digest when it is
// longer than 200 bytes. On an error the key is OrderAll, so such events
// are still ordered, among themselves.
func (o *OrderKey) Key(e *Event) (string, error) {
	if o.prg == nil {
		return OrderAll, nil
	}
	vars, err := e.activation()
	if err != nil {
		return OrderAll, err
	}
	out, err := run(o.prg, vars)
	if err != nil {
		return OrderAll, err
	}
	var k string
	switch v := out.(type) {
	case types.String:
		k = string(v)
	case types.Int:
		k = strconv.FormatInt(int64(v), 10)
	case types.Uint:
		k = strconv.FormatUint(uint64(v), 10)
	case types.Double:
		k = strconv.FormatFloat(float64(v), 'f', -1, 64)
	case types.Bool:
		k = strconv.FormatBool(bool(v))
	default:
		return OrderAll, fmt.Errorf("the key expression gave %s, want a string", out.Type())
	}
	switch {
	case k == "":
		// An empty key would read as "not ordered" in the outbox.
		k = OrderAll
	case len(k) > maxOrderKey:
		sum := sha256.Sum256([]byte(k))
		k = "sha256:" + hex.EncodeToString(sum[:])
	}
	return k, nil
}
