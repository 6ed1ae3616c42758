package module

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/hookgate/hookgate/persist"
)

// Breaker defaults; see Route.Breaker and Route.BreakerCooldown.
const (
	defaultBreaker         = 10
	defaultBreakerCooldown = 5 * time.Second
	// breakerCooldownGrowth caps the cool-down at this many times the
	// first one: 5s grows to at most 5m.
	breakerCooldownGrowth = 60
)

// Circuit states, as RouteStats.Circuit shows them.
const (
	circuitClosed   = "closed"
	circuitOpen     = "open"
	circuitHalfOpen = "half_open"
)

// breakerConfig is a route's compiled breaker settings.
type breakerConfig struct {
	threshold   int // consecutive failures that open the circuit; 0: off
	cooldown    time.Duration
	maxCooldown time.Duration
}

func compileBreaker(n int, cooldown caddy.Duration) (breakerConfig, error) {
	var c breakerConfig
	if cooldown < 0 {
		return c, fmt.Errorf("breaker_cooldown must be positive, got %s", time.Duration(cooldown))
	}
	switch {
	case n < 0:
		return c, nil // off
	case n == 0:
		c.threshold = defaultBreaker
	default:
		c.threshold = n
	}
	c.cooldown = time.Duration(cooldown)
	if c.cooldown == 0 {
		c.cooldown = defaultBreakerCooldown
	}
	c.maxCooldown = c.cooldown * breakerCooldownGrowth
	return c, nil
}

func (c breakerConfig) on() bool { return c.threshold > 0 }

// verdict is what one attempt says about the endpoint's health.
type verdict uint8

const (
	// verdictNeutral: the attempt says nothing about the endpoint (it was
	// refused by the egress policy, its URL could not be built, or the
	// client could not send the request: egress_denied, bad_url,
	// invalid_request).
	verdictNeutral verdict = iota
	// verdictUp: the endpoint answered, 2xx or an answer not worth a retry.
	verdictUp
	// verdictDown: a failure that is retried (dns, connect, tls, timeout,
	// 408, 425, 429, 5xx).
	verdictDown
)

func verdictOf(res result) verdict {
	switch {
	case res.ok():
		return verdictUp
	case res.class == classBadURL:
		// Retried when a {file.*} could not be read: the gateway's
		// trouble, not the endpoint's.
		return verdictNeutral
	case res.retry:
		return verdictDown
	case res.status != 0:
		return verdictUp
	}
	return verdictNeutral
}

// breaker is one route's circuit. The dispatcher's mutex guards it. It
// runs in memory; its open state is written to the route's stored state
// when it changes (see saveCircuit), so a restart resumes it.
type breaker struct {
	state    string    // circuitClosed ("" too), circuitOpen, circuitHalfOpen
	fails    int       // consecutive failures since closed, failed probes included
	retryAt  time.Time // when open: when the probe may go
	cooldown time.Duration
	probing  bool // half-open: the probe is in flight
}

// persisted is the circuit as the outbox keeps it: the zero value when
// closed. A half-open circuit is kept as open (its cool-down has passed,
// so after a restart it sends its probe at once).
func (b *breaker) persisted() persist.CircuitState {
	if b.state != circuitOpen && b.state != circuitHalfOpen {
		return persist.CircuitState{}
	}
	return persist.CircuitState{
		OpenedAt: b.retryAt.Add(-b.cooldown).UnixNano(),
		Cooldown: b.cooldown,
		Failures: b.fails,
	}
}

// restore resumes a circuit kept by persisted: open until its cool-down
// from when it opened has passed, then one probe.
func (b *breaker) restore(cs persist.CircuitState) {
	if !cs.Open() {
		*b = breaker{state: circuitClosed}
		return
	}
	*b = breaker{
		state:    circuitOpen,
		fails:    cs.Failures,
		cooldown: cs.Cooldown,
		retryAt:  time.Unix(0, cs.OpenedAt).Add(cs.Cooldown),
	}
}

// allow reports whether an attempt may start now, and whether it is the
// probe (the caller sets probing once it starts). When it may not, until
// is when to ask again; zero means when the probe in flight ends.
func (b *breaker) allow(c breakerConfig, now time.Time) (ok, probe bool, until time.Time) {
	if !c.on() {
		if b.state != circuitClosed {
			*b = breaker{state: circuitClosed}
		}
		return true, false, time.Time{}
	}
	switch b.state {
	case circuitOpen:
		if now.Before(b.retryAt) {
			return false, false, b.retryAt
		}
		b.state = circuitHalfOpen
		fallthrough
	case circuitHalfOpen:
		if b.probing {
			return false, false, time.Time{}
		}
		return true, true, time.Time{}
	}
	return true, false, time.Time{}
}

// probeNow ends an open circuit's cool-down, so that allow lets the probe
// go at once; it reports whether there was one to end. A failed probe
// reopens the circuit for twice the cool-down, as any probe's would.
func (b *breaker) probeNow(now time.Time) bool {
	if b.state != circuitOpen || !now.Before(b.retryAt) {
		return false
	}
	b.retryAt = now
	return true
}

// transition is a change record makes, for the log.
type transition uint8

const (
	noTransition       transition = iota
	circuitOpened                 // closed → open
	circuitReopened               // a failed probe: open again, for longer
	circuitClosedAgain            // a probe succeeded
)

// record counts an attempt's verdict. Only the probe moves an open or
// half-open circuit: attempts that started before it opened and end
// after say nothing new.
func (b *breaker) record(c breakerConfig, v verdict, probe bool, now time.Time) transition {
	if !c.on() {
		return noTransition
	}
	if probe {
		b.probing = false
		switch v {
		case verdictUp:
			*b = breaker{state: circuitClosed}
			return circuitClosedAgain
		case verdictDown:
			b.fails++
			b.cooldown = min(max(b.cooldown*2, c.cooldown), c.maxCooldown)
			b.state, b.retryAt = circuitOpen, now.Add(b.cooldown)
			return circuitReopened
		}
		return noTransition // another probe may go
	}
	if b.state != circuitClosed && b.state != "" {
		return noTransition
	}
	switch v {
	case verdictUp:
		b.fails = 0
	case verdictDown:
		b.fails++
		if b.fails >= c.threshold {
			b.cooldown = c.cooldown
			b.state, b.retryAt = circuitOpen, now.Add(b.cooldown)
			return circuitOpened
		}
	}
	return noTransition
}

// release forgets a probe that ended without an outcome (shutdown).
func (b *breaker) release(probe bool) {
	if probe {
		b.probing = false
	}
}

// stateAt is the circuit's state for stats: an open circuit whose
// cool-down has passed is half-open (it sends its probe on the next turn).
func (b *breaker) stateAt(now time.Time) string {
	switch b.state {
	case circuitOpen:
		if now.Before(b.retryAt) {
			return circuitOpen
		}
		return circuitHalfOpen
	case circuitHalfOpen:
		return circuitHalfOpen
	}
	return circuitClosed
}

// observe takes in what an attempt that ended at end says about the
// endpoint: the circuit, the last success or failure, and a 410 Gone,
// which pauses the route until an operator resumes it.
func (d *dispatcher) observe(log *zap.Logger, r *route, res result, probe bool, end time.Time, deliveryID string) {
	if res.ok() {
		d.lastSuccess.Store(end.UnixNano())
	} else {
		d.lastFailure.Store(end.UnixNano())
	}
	d.mu.Lock()
	tr := d.br.record(r.breaker, verdictOf(res), probe, end)
	cooldown := d.br.cooldown
	d.mu.Unlock()
	if tr != noTransition {
		d.saveCircuit(log)
	}
	switch tr {
	case circuitOpened:
		log.Warn("circuit opened: sends stop, pending deliveries wait",
			zap.String("route", d.name), zap.Int("consecutive_failures", r.breaker.threshold),
			zap.String("class", res.class), zap.Duration("probe_in", cooldown))
	case circuitReopened:
		log.Warn("circuit probe failed; circuit stays open",
			zap.String("route", d.name), zap.String("class", res.class), zap.Duration("probe_in", cooldown))
	case circuitClosedAgain:
		log.Info("circuit closed: the probe succeeded", zap.String("route", d.name))
		d.signal()
	}
	if res.gone {
		d.pauseGone(log, deliveryID)
	}
}

// saveCircuit writes the circuit's current state to the route's stored
// state, so that a restart finds it open (or closed) as it is now. It
// runs only when the circuit changes, at most once per cool-down, never
// for every failure. The circuit is read under the state lock, so of two
// saves racing the later state is the one written.
func (d *dispatcher) saveCircuit(log *zap.Logger) {
	_, err := d.updateState(func(st *persist.RouteState) {
		d.mu.Lock()
		st.Circuit = d.br.persisted()
		d.mu.Unlock()
	})
	if err != nil && !errors.Is(err, persist.ErrClosed) {
		log.Error("storing the circuit's state; a restart may find it closed",
			zap.String("route", d.name), zap.Error(err))
	}
}

// releaseProbe forgets a probe that ended without an outcome.
func (d *dispatcher) releaseProbe(probe bool) {
	if probe {
		d.mu.Lock()
		d.br.release(probe)
		d.mu.Unlock()
		d.signal()
	}
}
