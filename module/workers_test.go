package module

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// attemptWorkers counts the goroutines running or waiting in
// dispatcher.worker.
func attemptWorkers() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("module.(*dispatcher).worker("))
}

// Attempts made one after another on a route reuse one goroutine, which
// ends once the route has been idle for attemptIdle, and at shutdown.
func TestAttemptWorkersReusedAndEnd(t *testing.T) {
	sink := newCountingSink(t, nil)
	te := startTestEngine(t, "", map[string]*Route{"a": {URL: sink.URL}}, nil)
	d := te.dispatcherFor("a")
	idle := func() int {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.idle)
	}
	for i := int64(1); i <= 5; i++ {
		te.post(`{"n":1}`)
		waitUntil(t, "the delivery", func() bool { return te.stats("a").Delivered == i })
		// The worker goes idle after the attempt, which may be just after
		// the outcome is recorded.
		waitUntil(t, "an idle worker", func() bool { return idle() == 1 })
		if n := attemptWorkers(); n != 1 {
			t.Fatalf("after delivery %d: %d attempt workers, want 1 (reused)", i, n)
		}
	}
	deadline := time.Now().Add(attemptIdle + 10*time.Second)
	for attemptWorkers() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d attempt workers still there well after attemptIdle", attemptWorkers())
		}
		time.Sleep(20 * time.Millisecond)
	}

	te.post(`{"n":2}`)
	waitUntil(t, "the delivery", func() bool { return te.stats("a").Delivered == 6 })
	if n := attemptWorkers(); n != 1 {
		t.Fatalf("%d attempt workers, want 1", n)
	}
	te.Destruct()
	deadline = time.Now().Add(5 * time.Second)
	for attemptWorkers() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d attempt workers left after Destruct", attemptWorkers())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
