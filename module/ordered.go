package module

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"go.uber.org/zap"
)

// orderAll is the order key of a route ordered as a whole, and of events
// whose key cannot be computed.
const orderAll = "*"

// maxOrderKey is the longest key kept as it is; longer ones are replaced
// by their SHA-256, which keeps them apart at a fixed size.
const maxOrderKey = 200

// orderKeyer computes an ordered route's key for each event at ingest;
// the key is stored with the delivery (persist.Delivery.OrderKey), and
// the outbox lets one delivery per key into the ready index at a time.
type orderKeyer struct {
	prg cel.Program // nil: the whole route is one key
	// lastLog is when a failed evaluation was last logged (unix ns).
	lastLog atomic.Int64
}

// compileOrdered compiles Route.Ordered: "" (nil: unordered), "*", or a
// CEL expression over event whose result is a string, a number or a bool.
func compileOrdered(route, expr string) (*orderKeyer, error) {
	expr = strings.TrimSpace(expr)
	switch expr {
	case "":
		return nil, nil
	case orderAll:
		return &orderKeyer{}, nil
	}
	env, err := celEnv()
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("route %s: ordered: %s", route, strings.TrimSpace(iss.Err().Error()))
	}
	switch out := ast.OutputType(); {
	case out.IsExactType(types.StringType), out.IsExactType(types.DynType),
		out.IsExactType(types.IntType), out.IsExactType(types.UintType),
		out.IsExactType(types.DoubleType), out.IsExactType(types.BoolType):
	default:
		return nil, fmt.Errorf("route %s: ordered: the key expression gives %s, want a string (e.g. event.data.customer_id)", route, out)
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("route %s: ordered: %v", route, err)
	}
	return &orderKeyer{prg: prg}, nil
}

// key returns the event's order key. On an error the key is orderAll, so
// such events are still ordered, among themselves.
func (o *orderKeyer) key(c *celEvent) (string, error) {
	if o.prg == nil {
		return orderAll, nil
	}
	vars, err := c.activation()
	if err != nil {
		return orderAll, err
	}
	out, _, err := o.prg.Eval(vars)
	if err != nil {
		return orderAll, err
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
		return orderAll, fmt.Errorf("the key expression gave %s, want a string", out.Type())
	}
	switch {
	case k == "":
		// An empty key would read as "not ordered" in the outbox.
		k = orderAll
	case len(k) > maxOrderKey:
		sum := sha256.Sum256([]byte(k))
		k = "sha256:" + hex.EncodeToString(sum[:])
	}
	return k, nil
}

// orderKey is the OrderKey of r's delivery of an event ("" when r is not
// ordered). A key that cannot be computed is logged at most once a
// minute per route.
func (r *route) orderKey(c *celEvent, now time.Time, log *zap.Logger) string {
	if r.order == nil {
		return ""
	}
	k, err := r.order.key(c)
	if err != nil {
		last := r.order.lastLog.Load()
		if now.UnixNano()-last >= int64(time.Minute) && r.order.lastLog.CompareAndSwap(last, now.UnixNano()) {
			log.Warn(`order key could not be computed; the event is ordered under "*" (logged at most once a minute per route)`,
				zap.String("route", r.name), zap.String("event", c.ev.ID), zap.Error(err))
		}
	}
	return k
}
