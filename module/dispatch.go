package module

import (
	"errors"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hookgate/hookgate/persist"
)

// queueCap bounds a route's in-memory ready queue. What does not fit stays
// on disk and is read back by the scanner, so memory stays flat however
// large the backlog.
const queueCap = 512

// maxIdle is the longest a dispatcher sleeps without looking at the disk,
// a safety net under the wake-ups it gets from ingest and outcomes.
const maxIdle = 30 * time.Second

// job is a delivery with its event, ready to attempt.
type job struct {
	d  *persist.Delivery
	ev *persist.Event
}

// dispatcher feeds one route's deliveries to attempts, within the route's
// concurrency. Each route has its own, so a slow endpoint cannot hold up
// another route.
type dispatcher struct {
	e       *engine
	name    string
	route   atomic.Pointer[route] // nil: not in the config, paused
	pending atomic.Int64
	wake    chan struct{}

	mu       sync.Mutex
	queue    []*job
	known    map[string]struct{} // queued or in flight
	inflight int
	diskMore bool      // due deliveries may be on disk and not in queue
	nextDue  time.Time // earliest known future due time on disk
	// scanFrom is where the next scan of the ready index starts: every
	// entry due before it is queued, in flight or gone. Completed
	// deliveries leave deletion markers at the front of the index until
	// compaction; starting past them keeps scans cheap with a big backlog.
	scanFrom time.Time
}

func newDispatcher(e *engine, name string) *dispatcher {
	return &dispatcher{
		e:        e,
		name:     name,
		wake:     make(chan struct{}, 1),
		known:    make(map[string]struct{}),
		diskMore: true,
	}
}

func (d *dispatcher) setRoute(r *route) {
	d.route.Store(r)
	d.signal()
}

func (d *dispatcher) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// offer hands a freshly ingested delivery to the queue if there is room;
// otherwise it stays on disk for the scanner.
func (d *dispatcher) offer(j *job) {
	d.mu.Lock()
	if _, ok := d.known[j.d.ID]; !ok {
		if len(d.queue) < queueCap {
			d.queue = append(d.queue, j)
			d.known[j.d.ID] = struct{}{}
		} else {
			d.diskMore = true
		}
	}
	d.mu.Unlock()
	d.signal()
}

func (d *dispatcher) isKnown(id string) bool {
	d.mu.Lock()
	_, ok := d.known[id]
	d.mu.Unlock()
	return ok
}

func (d *dispatcher) run(stop <-chan struct{}) {
	log := d.e.logger().With(zap.String("route", d.name))
	timer := time.NewTimer(maxIdle)
	defer timer.Stop()
	for {
		if r := d.route.Load(); r != nil {
			d.safely(log, func() {
				d.fill()
				d.launch(r)
			})
		}
		wait := maxIdle
		d.mu.Lock()
		if !d.nextDue.IsZero() {
			wait = min(wait, max(d.nextDue.Sub(d.e.now()), time.Millisecond))
		}
		d.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-stop:
			return
		case <-d.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (d *dispatcher) safely(log *zap.Logger, fn func()) {
	defer func() {
		if v := recover(); v != nil {
			log.Error("dispatcher panic", zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
		}
	}()
	fn()
}

// fill tops the queue up from the ready index when it is half empty and
// the disk may hold due deliveries.
func (d *dispatcher) fill() {
	now := d.e.now()
	d.mu.Lock()
	room := queueCap - len(d.queue)
	due := d.diskMore || (!d.nextDue.IsZero() && !now.Before(d.nextDue))
	d.mu.Unlock()
	if room < queueCap/2 || !due {
		return
	}
	d.mu.Lock()
	from := d.scanFrom
	d.mu.Unlock()
	refs, next, last, err := d.e.store.DueFrom(d.name, from, now, room, d.isKnown)
	if err != nil {
		if !errors.Is(err, persist.ErrClosed) {
			d.e.logger().Error("reading ready deliveries", zap.String("route", d.name), zap.Error(err))
		}
		return
	}
	jobs := make([]*job, 0, len(refs))
	for _, ref := range refs {
		j, err := d.e.load(ref.ID)
		if err != nil {
			d.e.logger().Error("loading delivery", zap.String("route", d.name),
				zap.String("delivery", ref.ID), zap.Error(err))
			continue
		}
		// Due read the index from a snapshot: an attempt whose outcome was
		// committed since (and which has left known) may still show there.
		// The record is read after that commit, so it tells: take the
		// delivery only if it is still pending at the scanned due time.
		if j.d.Status != persist.StatusPending || j.d.Due.UnixNano() != ref.Due.UnixNano() {
			continue
		}
		jobs = append(jobs, j)
	}
	d.mu.Lock()
	for _, j := range jobs {
		if _, ok := d.known[j.d.ID]; ok {
			continue
		}
		d.known[j.d.ID] = struct{}{}
		d.queue = append(d.queue, j)
	}
	d.diskMore = !next.IsZero() && !next.After(now)
	switch {
	case !last.IsZero() && !from.After(d.scanFrom):
		d.scanFrom = last
	case last.IsZero() && !d.diskMore:
		// Nothing due from the cursor on: start from the top next time,
		// so nothing left behind by a reset can hide.
		d.scanFrom = time.Time{}
	}
	if d.diskMore {
		d.nextDue = time.Time{}
	} else {
		d.nextDue = next
	}
	d.mu.Unlock()
}

// launch starts attempts while the route has capacity.
func (d *dispatcher) launch(r *route) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.inflight < r.concurrency && len(d.queue) > 0 {
		j := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		d.inflight++
		d.e.wg.Add(1)
		go d.attempt(r, j)
	}
	if len(d.queue) == 0 {
		d.queue = d.queue[:0:0]
	}
}

// attempt runs one attempt and records its outcome.
func (d *dispatcher) attempt(r *route, j *job) {
	defer d.e.wg.Done()
	log := d.e.logger()
	defer func() {
		if v := recover(); v != nil {
			log.Error("delivery attempt panic", zap.String("route", d.name),
				zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			d.settle(j.d.ID, time.Time{}, j.d.Due)
		}
	}()
	ctx := d.e.attemptCtx
	start := d.e.now()
	res := d.e.sender.attempt(ctx, r, j, start)
	if ctx.Err() != nil && !res.ok() {
		// Shutdown cut the attempt short: it stays pending as it was and
		// spends no attempt.
		d.settle(j.d.ID, time.Time{}, j.d.Due)
		return
	}

	claimed := j.d.Due
	nd := *j.d
	nd.Attempts++
	nd.LastAttempt = start
	nd.LastStatus = res.status
	nd.LastClass = res.class
	nd.LastError = res.err
	att := &persist.Attempt{
		N:        nd.Attempts,
		Start:    start,
		Duration: res.dur,
		Status:   res.status,
		Class:    res.class,
		Error:    res.err,
		Response: res.body,
	}
	switch {
	case res.ok():
		nd.Status, nd.Done = persist.StatusDelivered, start.Add(res.dur)
	case res.retry:
		if due, ok := r.retry.next(nd.Attempts, nd.Created, start, res.retryAfter, jitterRand()); ok {
			nd.Status, nd.Due = persist.StatusPending, due
		} else {
			nd.Status, nd.Done = persist.StatusDead, start.Add(res.dur)
		}
	default:
		nd.Status, nd.Done = persist.StatusDead, start.Add(res.dur)
	}
	d.logOutcome(log, &nd, res)

	o := persist.Outcome{Delivery: &nd, ClaimedDue: claimed, Attempt: att}
	d.e.store.Record(o, func(err error) {
		if err != nil {
			if !errors.Is(err, persist.ErrClosed) {
				log.Error("recording delivery outcome", zap.String("route", d.name),
					zap.String("delivery", nd.ID), zap.Error(err))
			}
			// Unrecorded: the delivery is still pending at its old due time.
			d.settle(nd.ID, claimed, claimed)
			return
		}
		if nd.Status != persist.StatusPending {
			d.pending.Add(-1)
			d.e.pending.Add(-1)
			d.settle(nd.ID, time.Time{}, time.Time{})
		} else {
			d.settle(nd.ID, nd.Due, time.Time{})
		}
	})
}

// settle forgets an attempt that has ended; due, when set, is when the
// delivery is due again. An attempt left unrecorded stays in the index at
// its claimed due time, which may be before the scan cursor: unrecorded
// says so, and the cursor moves back.
func (d *dispatcher) settle(id string, due, unrecorded time.Time) {
	d.mu.Lock()
	if !unrecorded.IsZero() && unrecorded.Before(d.scanFrom) {
		d.scanFrom = time.Time{}
	}
	delete(d.known, id)
	d.inflight--
	if !due.IsZero() && (d.nextDue.IsZero() || due.Before(d.nextDue)) {
		d.nextDue = due
	}
	d.mu.Unlock()
	d.signal()
}

func (d *dispatcher) logOutcome(log *zap.Logger, nd *persist.Delivery, res result) {
	fields := func() []zap.Field {
		return []zap.Field{
			zap.String("route", d.name),
			zap.String("event", nd.EventID),
			zap.String("delivery", nd.ID),
			zap.Int("attempt", nd.Attempts),
			zap.Int("status", res.status),
			zap.Duration("duration", res.dur),
		}
	}
	switch nd.Status {
	case persist.StatusDelivered:
		if c := log.Check(zapcore.InfoLevel, "delivered"); c != nil {
			c.Write(fields()...)
		}
	case persist.StatusDead:
		if c := log.Check(zapcore.InfoLevel, "delivery dead"); c != nil {
			c.Write(append(fields(), zap.String("class", res.class), zap.String("error", res.err))...)
		}
	default:
		if c := log.Check(zapcore.WarnLevel, "delivery attempt failed"); c != nil {
			c.Write(append(fields(), zap.String("class", res.class), zap.String("error", res.err),
				zap.Time("next", nd.Due))...)
		}
	}
}

// load reads a delivery and its event.
func (e *engine) load(id string) (*job, error) {
	dl, err := e.store.Delivery(id)
	if err != nil {
		return nil, err
	}
	ev, err := e.store.Event(dl.EventID)
	if err != nil {
		return nil, err
	}
	return &job{d: dl, ev: ev}, nil
}
