package module

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/time/rate"

	"github.com/hookgate/hookgate/persist"
)

// queueCap bounds a route's in-memory ready queue. What does not fit stays
// on disk and is read back by the scanner, so memory stays flat however
// large the backlog.
const queueCap = 512

// maxIdle is the longest a dispatcher sleeps without looking at the disk,
// a safety net under the wake-ups it gets from ingest and outcomes.
const maxIdle = 30 * time.Second

// outcomeSpaceRecheck is how often a route held because the outbox cannot
// record outcomes (short of space) looks again.
const outcomeSpaceRecheck = time.Second

// job is a delivery with its event, ready to attempt.
type job struct {
	d  *persist.Delivery
	ev *persist.Event
	// test marks a test send (send.go): it carries webhook-test: true.
	test bool
}

// dispatcher feeds one route's deliveries to attempts, within the route's
// concurrency, rate limit and circuit breaker, unless the route is held
// (removed, disabled, paused or unverified). Each route has its own, so a
// slow endpoint cannot hold up another route.
type dispatcher struct {
	e       *Engine
	name    string
	route   atomic.Pointer[route] // nil: not in the config, paused
	pending atomic.Int64
	wake    chan struct{}

	mu    sync.Mutex
	queue []*job
	known map[string]struct{} // queued or in flight
	// reserved holds deliveries being stored (see reserve); the scanner
	// skips them like known ones.
	reserved map[string]struct{}
	inflight int
	diskMore bool      // due deliveries may be on disk and not in queue
	nextDue  time.Time // earliest known future due time on disk
	// scanFrom is where the next scan of the ready index starts: every
	// entry due before it is queued, in flight or gone. Completed
	// deliveries leave deletion markers at the front of the index until
	// compaction; starting past them keeps scans cheap with a big backlog.
	scanFrom time.Time
	// diskGen counts the times something said the disk may hold more
	// (markDisk), so a scan that started before does not clear diskMore.
	diskGen uint64
	// idle are the channels of the workers waiting for an attempt
	// (workers.go), in the order they went idle; stop is the channel run
	// was given.
	idle []chan attemptTask
	stop <-chan struct{}

	br         breaker       // the circuit (breaker.go)
	lim        *rate.Limiter // the rate limit (ratelimit.go); nil: none
	limText    string
	verifying  bool      // a verify_endpoint check is running
	verifyNext time.Time // when a failed check may run again
	verifyErr  string    // why the last check failed; "" once one passed

	// holding is set while the route may not send: offers then stay on
	// disk instead of filling the queue.
	holding atomic.Bool
	// unrecordedUntil (Unix ns) holds the route after an outcome could
	// not be recorded, so that its delivery is not sent again at once.
	unrecordedUntil atomic.Int64

	// stMu guards state, the route's stored state (paused, verified URL,
	// open circuit); updateState writes it through to the outbox. Lock
	// order: stMu before mu.
	stMu  sync.Mutex
	state persist.RouteState

	// Counters for RouteStats.
	delivered   atomic.Int64 // since the process started
	dead        atomic.Int64 // in the outbox (counted at open, recounted by recountDead)
	lastSuccess atomic.Int64 // unix ns of the end of the last 2xx attempt
	lastFailure atomic.Int64 // unix ns of the end of the last failed attempt
	// hist is the last hour of attempts, per minute (history.go).
	hist history
	// series are the route's metrics series (metrics.go).
	series routeSeries
}

func newDispatcher(e *Engine, name string) *dispatcher {
	d := &dispatcher{
		e:        e,
		name:     name,
		wake:     make(chan struct{}, 1),
		known:    make(map[string]struct{}),
		reserved: make(map[string]struct{}),
		diskMore: true,
		state:    e.states[name],
	}
	// A circuit that was open when the outbox closed stays open until
	// its cool-down has passed, then sends one probe.
	d.br.restore(d.state.Circuit)
	return d
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

// reserve hides a delivery about to be stored from the scanner until
// offer or release. The outbox makes a write visible to reads before it
// is durable, so before the store call returns: without the reservation
// a scan could find the delivery, attempt it and finish, and the offer
// that follows would queue it a second time.
func (d *dispatcher) reserve(id string) {
	d.mu.Lock()
	d.reserved[id] = struct{}{}
	d.mu.Unlock()
}

// release gives up a reservation without an offer: the delivery was not
// stored, waits behind its order key, or its store call failed. In that
// last case (stored says it may be on disk) the scanner looks again.
func (d *dispatcher) release(id string, stored bool) {
	d.mu.Lock()
	delete(d.reserved, id)
	if stored {
		d.markDisk()
	}
	d.mu.Unlock()
	if stored {
		d.signal()
	}
}

// offer hands a freshly stored delivery to the queue if there is room;
// otherwise it stays on disk for the scanner. It ends its reservation.
func (d *dispatcher) offer(j *job) {
	d.mu.Lock()
	delete(d.reserved, j.d.ID)
	if _, ok := d.known[j.d.ID]; !ok {
		if len(d.queue) < queueCap && !d.holding.Load() {
			d.queue = append(d.queue, j)
			d.known[j.d.ID] = struct{}{}
		} else {
			d.markDisk()
		}
	}
	d.mu.Unlock()
	d.signal()
}

// markDisk notes that due deliveries may be on disk and not in the
// queue. Must hold d.mu.
func (d *dispatcher) markDisk() {
	d.diskMore = true
	d.diskGen++
}

func (d *dispatcher) isKnown(id string) bool {
	d.mu.Lock()
	_, ok := d.known[id]
	if !ok {
		_, ok = d.reserved[id]
	}
	d.mu.Unlock()
	return ok
}

func (d *dispatcher) run(stop <-chan struct{}) {
	d.stop = stop
	log := d.e.logger().With(zap.String("route", d.name))
	timer := time.NewTimer(maxIdle)
	defer timer.Stop()
	for {
		var wake time.Time
		d.safely(log, func() { wake = d.turn(d.route.Load()) })
		wait := maxIdle
		if !wake.IsZero() {
			wait = min(wait, max(wake.Sub(d.e.now()), time.Millisecond))
		}
		timer.Reset(wait)
		select {
		case <-stop:
			d.retireAll()
			return
		case <-d.wake:
		case <-timer.C:
			if wait == maxIdle {
				// Nothing woke the route for maxIdle: read the ready
				// index from the top, in case a wake-up went missing.
				d.rescan()
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// Route states, as RouteStats.State shows them.
const (
	stateActive     = "active"
	stateRemoved    = "removed"
	stateDisabled   = "disabled"
	statePaused     = "paused"
	stateUnverified = "unverified"
)

// gate says why route r may not send now ("" when it may): not in the
// config, disabled, paused, or its endpoint not verified.
func (d *dispatcher) gate(r *route) string {
	switch st := d.routeState(); {
	case r == nil:
		return stateRemoved
	case r.disabled:
		return stateDisabled
	case st.Paused:
		return statePaused
	case r.verify && st.VerifiedURL != r.rawURL:
		return stateUnverified
	}
	return ""
}

// turn is one round of the dispatcher: hold everything while the route
// may not send (or its circuit is open), else top the queue up and start
// attempts. It returns when to look again; zero means at the next
// wake-up (or after maxIdle).
func (d *dispatcher) turn(r *route) time.Time {
	now := d.e.now()
	if g := d.gate(r); g != "" {
		d.hold()
		if g == stateUnverified {
			return d.maybeVerify(r, now)
		}
		return time.Time{}
	}
	if d.e.outcomesRefused() {
		d.hold()
		return now.Add(outcomeSpaceRecheck)
	}
	if until := time.Unix(0, d.unrecordedUntil.Load()); now.Before(until) {
		// An outcome could not be recorded a moment ago.
		d.hold()
		return until
	}
	d.mu.Lock()
	ok, _, until := d.br.allow(r.breaker, now)
	d.mu.Unlock()
	if !ok && !until.IsZero() {
		// Open: nothing is taken from the disk, so nothing spends an
		// attempt, until the cool-down ends and the probe may go.
		d.hold()
		return until
	}
	d.holding.Store(false)
	d.fill()
	return d.launch(r, now)
}

// hold stops taking work: queued deliveries are let go (they stay on
// disk, and the scan reads them again from the top when sending
// resumes), and offers stay on disk.
func (d *dispatcher) hold() {
	d.holding.Store(true)
	d.mu.Lock()
	if len(d.queue) > 0 {
		for _, j := range d.queue {
			delete(d.known, j.d.ID)
		}
		d.queue = nil
		d.scanFrom = time.Time{}
		d.markDisk()
	}
	d.mu.Unlock()
}

func (d *dispatcher) safely(log *zap.Logger, fn func()) {
	defer func() {
		if v := recover(); v != nil {
			logPanic(log, "dispatcher panic", v)
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
	from, gen := d.scanFrom, d.diskGen
	d.mu.Unlock()
	refs, next, last, err := d.e.store.DueFrom(d.name, from, now, room, d.isKnown)
	if err != nil {
		if !errors.Is(err, persist.ErrClosed) {
			d.e.logger().Error("reading ready deliveries", zap.String("route", d.name), zap.Error(err))
		}
		return
	}
	jobs := make([]*job, 0, len(refs))
	loaded := d.e.loadAll(refs)
	for i, ref := range refs {
		j, err := loaded[i].j, loaded[i].err
		if errors.Is(err, errEventGone) && j.d.Status == persist.StatusPending && j.d.Due.Equal(ref.Due) {
			d.orphan(j.d, now)
			continue
		}
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
		if _, ok := d.reserved[j.d.ID]; ok {
			continue
		}
		d.known[j.d.ID] = struct{}{}
		d.queue = append(d.queue, j)
	}
	// An outcome or offer during the scan (a retry, a promoted ordered
	// delivery, an offer that did not fit) may have put in entries the
	// scan's snapshot missed, before the entries it passed: scan again,
	// and from where this scan started.
	changed := d.diskGen != gen
	d.diskMore = !next.IsZero() && !next.After(now) || changed
	switch {
	case changed:
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

// launch starts attempts while the route has capacity, its circuit lets
// them through (one probe at a time when half-open) and its rate limit
// has tokens. It returns when to look again: when a token comes, or when
// a delivery on disk falls due while the queue has room for it.
func (d *dispatcher) launch(r *route, now time.Time) (wake time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	lim := d.limiter(r)
	for d.inflight < r.concurrency && len(d.queue) > 0 {
		ok, probe, until := d.br.allow(r.breaker, now)
		if !ok {
			wake = until
			break
		}
		if ok, at := takeToken(lim, now); !ok {
			wake = at
			break
		}
		d.br.probing = d.br.probing || probe
		j := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		d.inflight++
		d.e.wg.Add(1)
		d.startAttempt(attemptTask{r: r, j: j, probe: probe})
	}
	if len(d.queue) == 0 {
		d.queue = d.queue[:0:0]
	}
	// With the queue over half full, fill would not read the disk
	// anyway; finishing attempts wake the dispatcher.
	if !d.nextDue.IsZero() && len(d.queue) <= queueCap/2 && (wake.IsZero() || d.nextDue.Before(wake)) {
		wake = d.nextDue
	}
	return wake
}

// attempt runs one attempt and records its outcome. probe marks the one
// attempt a half-open circuit lets through.
func (d *dispatcher) attempt(r *route, j *job, probe bool) {
	defer d.e.wg.Done()
	log := d.e.logger()
	defer func() {
		if v := recover(); v != nil {
			logPanic(log, "delivery attempt panic", v, zap.String("route", d.name))
			d.releaseProbe(probe)
			d.unclaim(j.d.ID)
			d.settle(j.d.ID, time.Time{}, j.d.Due)
		}
	}()
	if !d.claim(r, j) {
		d.releaseProbe(probe)
		d.settle(j.d.ID, time.Time{}, time.Time{})
		return
	}
	ctx := d.e.attemptCtx
	start := d.e.now()
	// The attempt runs under the engine's context, which a shutdown
	// cancels once the grace is over.
	sctx, span := startAttemptSpan(ctx, r, j, j.d.Attempts+1)
	res := d.e.sender.attempt(sctx, r, j, start)
	endAttemptSpan(span, res)
	if ctx.Err() != nil && !res.ok() {
		// Shutdown cut the attempt short: it stays pending as it was and
		// spends no attempt.
		d.releaseProbe(probe)
		d.unclaim(j.d.ID)
		d.settle(j.d.ID, time.Time{}, j.d.Due)
		return
	}
	d.observe(log, r, res, probe, start.Add(res.dur), j.d.ID)

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
		TraceID:  traceID(sctx),
	}
	switch {
	case res.ok():
		nd.Status, nd.Done = persist.StatusDelivered, start.Add(res.dur)
	case res.retry:
		if due, ok := r.retry.nextFor(&nd, start, res.retryAfter, jitterRand()); ok {
			nd.Status, nd.Due = persist.StatusPending, due
		} else {
			nd.Status, nd.Done = persist.StatusDead, start.Add(res.dur)
			if nd.Attempts-nd.ScheduleBase <= len(r.retry.delays) {
				// Attempts were left: max_age ended it. Say so, or it
				// reads as if the schedule had run out.
				nd.LastError += fmt.Sprintf("; no retry: max_age (%v) would be over before the next one", r.retry.maxAge)
			}
		}
	default:
		nd.Status, nd.Done = persist.StatusDead, start.Add(res.dur)
	}
	d.logOutcome(log, &nd, res)

	o := persist.Outcome{Delivery: &nd, ClaimedDue: claimed, Attempt: att}
	dead := nd.Status == persist.StatusDead
	if dead {
		// Until the dead count says so (see Engine.deadMu).
		d.e.deadMu.RLock()
	}
	d.e.store.Record(o, func(err error) {
		if dead {
			defer d.e.deadMu.RUnlock()
		}
		if err != nil {
			if !errors.Is(err, persist.ErrClosed) {
				log.Error("recording delivery outcome", zap.String("route", d.name),
					zap.String("delivery", nd.ID), zap.Error(err))
			}
			// Unrecorded: the delivery is still pending at its old due time.
			// The route pauses a moment first: taken up again at once, it
			// would be sent again and again while the outbox refuses.
			d.unrecordedUntil.Store(d.e.now().Add(outcomeSpaceRecheck).UnixNano())
			d.unclaim(nd.ID)
			d.settle(nd.ID, claimed, claimed)
			return
		}
		// Counted once recorded: an attempt whose outcome is lost is
		// made again, and would be counted twice.
		d.countAttempt(nd.Status, res)
		d.hist.add(start.Add(res.dur), nd.Status, res.dur)
		d.e.feed.publish(func() Outcome { return outcomeOf(&nd, j.ev, res) })
		if nd.Status != persist.StatusPending {
			d.countFinal(nd.Status)
			if nd.OrderKey != "" {
				// The outbox put the next delivery of its key in the
				// ready index, due when the outcome was applied: after
				// start, but maybe before entries a scan passed while the
				// commit was syncing. Move the cursor back to start.
				d.mu.Lock()
				d.markDisk()
				if start.Before(d.scanFrom) {
					d.scanFrom = start
				}
				d.mu.Unlock()
			}
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
		d.diskGen++
	}
	delete(d.known, id)
	d.inflight--
	if !due.IsZero() {
		if d.nextDue.IsZero() || due.Before(d.nextDue) {
			d.nextDue = due
		}
		if due.Before(d.scanFrom) {
			// A short retry delay can fall due before entries a scan
			// passed while this outcome was being committed.
			d.scanFrom = due
		}
		// A scan running now read a snapshot from before this outcome:
		// it must not replace nextDue with what it saw (fill checks).
		d.diskGen++
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

// errEventGone is load's error for a delivery whose event is no longer
// stored; the job it returns then holds the delivery alone.
var errEventGone = errors.New("the delivery's event is no longer stored")

// loadedJob is load's answer from a delivery and its event as read
// (by a persist.JobLoader, or one at a time).
func loadedJob(id string, j persist.Job) (*job, error) {
	switch {
	case j.Delivery == nil:
		return nil, j.Err
	case errors.Is(j.Err, persist.ErrNotFound):
		return &job{d: j.Delivery}, fmt.Errorf("delivery %s: event %s: %w", id, j.Delivery.EventID, errEventGone)
	case j.Err != nil:
		return nil, j.Err
	}
	return &job{d: j.Delivery, ev: j.Event}, nil
}

// load reads a delivery and its event.
func (e *Engine) load(id string) (*job, error) {
	dl, err := e.store.Delivery(id)
	if err != nil {
		return nil, err
	}
	ev, err := e.store.Event(dl.EventID)
	return loadedJob(id, persist.Job{Delivery: dl, Event: ev, Err: err})
}

// orphan makes dead a pending delivery whose event is gone (an outbox
// written before an event could no longer be overwritten or expire
// under a pending delivery): there is nothing to send, and left pending
// it would be read and skipped by every scan for ever. It spends no
// attempt; last_error says why, and a replay finds it like any dead one.
func (d *dispatcher) orphan(dl *persist.Delivery, now time.Time) {
	d.mu.Lock()
	if _, ok := d.known[dl.ID]; ok {
		d.mu.Unlock()
		return
	}
	d.known[dl.ID] = struct{}{}
	d.mu.Unlock()
	log := d.e.logger()
	nd := *dl
	nd.Status, nd.Done = persist.StatusDead, now
	nd.LastError = fmt.Sprintf("event %s is no longer stored: nothing to deliver", dl.EventID)
	d.e.store.Record(persist.Outcome{Delivery: &nd, ClaimedDue: dl.Due}, func(err error) {
		if err == nil {
			log.Error("delivery dead: its event is no longer stored", zap.String("route", d.name),
				zap.String("event", nd.EventID), zap.String("delivery", nd.ID))
			d.countFinal(persist.StatusDead)
		} else if !errors.Is(err, persist.ErrClosed) {
			log.Error("recording a delivery without event as dead", zap.String("route", d.name),
				zap.String("delivery", nd.ID), zap.Error(err))
		}
		d.mu.Lock()
		delete(d.known, nd.ID)
		// The next of its order key, if any, is due now.
		d.markDisk()
		d.scanFrom = time.Time{}
		d.mu.Unlock()
		d.signal()
	})
}
