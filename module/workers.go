package module

import (
	"slices"
	"time"
)

// attemptIdle is how long an attempt goroutine waits for the next attempt
// of its route before it is let go. Under load a route's attempts follow
// each other much faster, so the goroutines, and the stacks they have
// grown through the HTTP client, are reused instead of grown again for
// every delivery; a quiet route keeps none for long.
const attemptIdle = 500 * time.Millisecond

// attemptTask is one attempt handed to a worker (see dispatcher.attempt);
// one without a job tells the worker to end.
type attemptTask struct {
	r     *route
	j     *job
	probe bool
}

// startAttempt runs t on the idle worker of the route that waited least,
// or on a new one. The caller has counted the attempt in d.e.wg. Must
// hold d.mu.
func (d *dispatcher) startAttempt(t attemptTask) {
	if n := len(d.idle); n > 0 {
		next := d.idle[n-1]
		d.idle[n-1] = nil
		d.idle = d.idle[:n-1]
		next <- t // buffered, and an idle worker is handed one task
		return
	}
	go d.worker(t, d.stop)
}

// retireAll ends every idle worker; run calls it when the dispatcher
// stops. Workers busy then end after their attempt (see worker).
func (d *dispatcher) retireAll() {
	d.mu.Lock()
	for _, next := range d.idle {
		next <- attemptTask{}
	}
	clear(d.idle)
	d.idle = d.idle[:0]
	d.mu.Unlock()
}

// worker runs attempts: t, then those startAttempt hands it while it is
// idle, until it has waited attemptIdle for one or retireAll lets it go.
// It goes idle only while the dispatcher runs: stop is checked under
// d.mu, which retireAll takes after stop is closed, so no worker waits on
// after that.
func (d *dispatcher) worker(t attemptTask, stop <-chan struct{}) {
	next := make(chan attemptTask, 1)
	var timer *time.Timer
	for t.j != nil {
		d.attempt(t.r, t.j, t.probe)
		d.mu.Lock()
		select {
		case <-stop:
			d.mu.Unlock()
			return
		default:
		}
		d.idle = append(d.idle, next)
		d.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(attemptIdle)
		} else {
			timer.Reset(attemptIdle)
		}
		select {
		case t = <-next:
			timer.Stop()
		case <-timer.C:
			if d.leaveIdle(next) {
				return
			}
			// Handed a task (or told to end) just as the wait ran out:
			// startAttempt and retireAll send under d.mu, after taking
			// the worker off the idle list.
			t = <-next
		}
	}
}

// leaveIdle takes the worker waiting on next off the idle list, and says
// whether it was there; if not, a task is already on its way to next.
func (d *dispatcher) leaveIdle(next chan attemptTask) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := slices.Index(d.idle, next)
	if i < 0 {
		return false
	}
	d.idle = slices.Delete(d.idle, i, i+1)
	return true
}
