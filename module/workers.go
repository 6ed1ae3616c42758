package module

import (
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

// idleWorker is a worker waiting for a task on next since since (wall
// clock, whatever the engine's clock says).
type idleWorker struct {
	next  chan attemptTask
	since time.Time
}

// startAttempt runs t on the idle worker of the route that waited least,
// or on a new one. The caller has counted the attempt in d.e.wg. Must
// hold d.mu.
func (d *dispatcher) startAttempt(t attemptTask) {
	if n := len(d.idle); n > 0 {
		w := d.idle[n-1]
		d.idle[n-1] = idleWorker{}
		d.idle = d.idle[:n-1]
		w.next <- t // buffered, and an idle worker is handed one task
		return
	}
	go d.worker(t, d.stop)
}

// retireIdle ends the workers idle for attemptIdle or more, and returns
// how long until the next one is due to end (0: none is idle). The run
// loop calls it, so that a route that goes quiet lets its workers go.
func (d *dispatcher) retireIdle() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	n := 0
	// Oldest first: the list is in the order the workers went idle.
	for n < len(d.idle) && now.Sub(d.idle[n].since) >= attemptIdle {
		d.idle[n].next <- attemptTask{}
		n++
	}
	if n > 0 {
		rest := copy(d.idle, d.idle[n:])
		clear(d.idle[rest:])
		d.idle = d.idle[:rest]
	}
	if len(d.idle) == 0 {
		return 0
	}
	return attemptIdle - now.Sub(d.idle[0].since)
}

// retireAll ends every idle worker; run calls it when the dispatcher
// stops. Workers busy then end after their attempt (see worker).
func (d *dispatcher) retireAll() {
	d.mu.Lock()
	for _, w := range d.idle {
		w.next <- attemptTask{}
	}
	clear(d.idle)
	d.idle = d.idle[:0]
	d.mu.Unlock()
}

// worker runs attempts: t, then those startAttempt hands it while it is
// idle, until retireIdle or retireAll lets it go. It goes idle only while
// the dispatcher runs: stop is checked under d.mu, which retireAll takes
// after stop is closed, so no worker waits on after that.
func (d *dispatcher) worker(t attemptTask, stop <-chan struct{}) {
	next := make(chan attemptTask, 1)
	for t.j != nil {
		d.attempt(t.r, t.j, t.probe)
		d.mu.Lock()
		select {
		case <-stop:
			d.mu.Unlock()
			return
		default:
		}
		d.idle = append(d.idle, idleWorker{next: next, since: time.Now()})
		d.mu.Unlock()
		t = <-next
	}
}
