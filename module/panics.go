package module

import (
	"runtime/debug"

	"go.uber.org/zap"
)

// logPanic logs v, a value recovered from a panic, with the stack. A
// goroutine the engine owns recovers (a bad record or a bug must not take
// Caddy down) and calls this from its deferred function.
func logPanic(log *zap.Logger, msg string, v any, fields ...zap.Field) {
	log.Error(msg, append(fields, zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))...)
}
