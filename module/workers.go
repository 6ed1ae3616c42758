package module

import (
	"slices"
	"time"
)

// attemptIdle is how long an attempt goroutine waits for the next attempt
// of its route before it ends. Under load a route's attempts follow each
// other much faster, so the goroutines, and the stacks they have grown
// through the HTTP client, are reused instead of grown again for every
// delivery; a quiet route keeps none for long.
const attemptIdle = 500 * time.Millisecond

// attemptTask is one attempt handed to a worker (see dispatcher.attempt).
type attemptTask struct {
	r     *route
	j     *job
	probe bool
}

// startAttempt runs t on an idle worker of the route, or on a new one.
// The caller has counted the attempt in d.e.wg. Must hold d.mu.
func (d *dispatcher) startAttempt(t attemptTask) {
	if n := len(d.idle); n > 0 {
		w := d.idle[n-1]
		d.idle[n-1] = nil
		d.idle = d.idle[:n-1]
		w <- t // buffered, and only one task is ever handed to an idle worker
		return
	}
	go d.worker(t, d.stop)
}

// worker runs attempts: t, then those startAttempt hands it while it is
// idle. It ends after attemptIdle without one, or once the dispatcher
// stops.
func (d *dispatcher) worker(t attemptTask, stop <-chan struct{}) {
	next := make(chan attemptTask, 1)
	timer := time.NewTimer(attemptIdle)
	defer timer.Stop()
	for {
		d.attempt(t.r, t.j, t.probe)
		t = attemptTask{}
		d.mu.Lock()
		d.idle = append(d.idle, next)
		d.mu.Unlock()
		timer.Reset(attemptIdle)
		select {
		case t = <-next:
			continue
		case <-timer.C:
		case <-stop:
		}
		d.mu.Lock()
		if i := slices.Index(d.idle, next); i >= 0 {
			d.idle = slices.Delete(d.idle, i, i+1)
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
		// startAttempt took this worker off the idle list, so a task is
		// in next (it sends while holding d.mu).
		t = <-next
	}
}
