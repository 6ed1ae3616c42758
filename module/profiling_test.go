package module

import (
	"runtime"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// The profiling variables set the runtime's rates once; a bad value is
// logged and ignored.
func TestProfileRatesFromEnvironment(t *testing.T) {
	defer runtime.SetMutexProfileFraction(runtime.SetMutexProfileFraction(-1))
	defer runtime.SetBlockProfileRate(0)

	core, logs := observer.New(zap.InfoLevel)
	profileRatesOnce = sync.Once{}
	t.Setenv(envMutexFraction, "7")
	t.Setenv(envBlockRate, "soon")
	setProfileRates(zap.New(core))
	if got := runtime.SetMutexProfileFraction(-1); got != 7 {
		t.Fatalf("mutex profile fraction %d, want 7", got)
	}
	if n := logs.FilterMessageSnippet("ignoring a profiling variable").Len(); n != 1 {
		t.Fatalf("%d warnings for a bad value, want 1", n)
	}

	// Once per process: a reload does not set them again.
	t.Setenv(envMutexFraction, "9")
	setProfileRates(zap.New(core))
	if got := runtime.SetMutexProfileFraction(-1); got != 7 {
		t.Fatalf("mutex profile fraction %d after a second provision, want 7", got)
	}
}
