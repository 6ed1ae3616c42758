package module

import (
	"os"
	"runtime"
	"strconv"
	"sync"

	"go.uber.org/zap"
)

// Contention profiles on demand. Caddy's admin endpoint serves
// /debug/pprof/block and /debug/pprof/mutex, but Go records blocking and
// mutex contention only once a process asks it to, so they stay empty.
// Two environment variables ask, when the webhooks app is first
// provisioned:
//
//   - HOOKGATE_BLOCK_PROFILE_RATE: record on average one blocking event
//     per that many nanoseconds spent blocked (1: every one);
//   - HOOKGATE_MUTEX_PROFILE_FRACTION: record one in that many contended
//     mutex waits.
//
// Both cost CPU in every goroutine that blocks: they are for diagnosing
// a slow gateway, not for leaving on.
const (
	envBlockRate     = "HOOKGATE_BLOCK_PROFILE_RATE"
	envMutexFraction = "HOOKGATE_MUTEX_PROFILE_FRACTION"
)

var profileRatesOnce sync.Once

// setProfileRates applies the variables above, once per process.
func setProfileRates(logger *zap.Logger) {
	profileRatesOnce.Do(func() {
		if n, ok := profileRate(logger, envBlockRate); ok {
			runtime.SetBlockProfileRate(n)
			logger.Info("block profiling on", zap.Int("rate_ns", n))
		}
		if n, ok := profileRate(logger, envMutexFraction); ok {
			runtime.SetMutexProfileFraction(n)
			logger.Info("mutex profiling on", zap.Int("fraction", n))
		}
	})
}

func profileRate(logger *zap.Logger, name string) (int, bool) {
	v := os.Getenv(name)
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		logger.Warn("ignoring a profiling variable: expected a whole number from 1 up",
			zap.String("variable", name), zap.String("value", v))
		return 0, false
	}
	return n, true
}
