package module

import (
	"time"

	"github.com/dustin/go-humanize"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hookgate/hookgate/persist"
)

// spaceLogEvery rate-limits the warnings about storage running short:
// near the threshold the state may flip as GC and compactions free and
// take space.
const spaceLogEvery = time.Minute

// spaceLogState pairs the warning that a storage limit was reached with
// the line saying it cleared: a suppressed warning gets no "cleared".
type spaceLogState struct {
	active bool // in an episode
	warned bool // and its start was logged
	last   time.Time
	// unlogged counts the episodes that started without a line since
	// the last logged one (within spaceLogEvery of it); the next logged
	// start reports them.
	unlogged int
}

// raise reports whether to log the start of an episode (false while in
// one), and how many began unlogged since the last one that was.
func (s *spaceLogState) raise(now time.Time) (bool, int) {
	if s.active {
		return false, 0
	}
	s.active = true
	if !s.last.IsZero() && now.Sub(s.last) < spaceLogEvery {
		s.unlogged++
		return false, 0
	}
	n := s.unlogged
	s.warned, s.last, s.unlogged = true, now, 0
	return true, n
}

// clear reports whether to log the end of an episode: one whose start
// was logged.
func (s *spaceLogState) clear() bool {
	was := s.active && s.warned
	s.active, s.warned = false, false
	return was
}

// spaceChanged logs the outbox starting or stopping to refuse writes for
// lack of space; the outbox calls it from its committer.
func (e *Engine) spaceChanged(sp persist.Space) {
	e.spaceMu.Lock()
	defer e.spaceMu.Unlock()
	e.logSpace(e.logger(), sp)
}

// spaceAtOpen logs an outbox that opened already short of space (no
// change would report it). Must run before the outbox can call
// spaceChanged.
func (e *Engine) spaceAtOpen(logger *zap.Logger) {
	sg, ok := e.store.(persist.SpaceGuard)
	if !ok {
		return
	}
	// Read before locking: the outbox calls spaceChanged with its own
	// lock held, so e.spaceMu is never held while calling into it.
	sp := sg.Space()
	e.spaceMu.Lock()
	defer e.spaceMu.Unlock()
	e.logSpace(logger, sp)
}

// logSpace writes the lines for state sp. Must hold e.spaceMu.
func (e *Engine) logSpace(log *zap.Logger, sp persist.Space) {
	now := e.now()
	fields := func() []zap.Field {
		f := []zap.Field{zap.String("dir", e.dir),
			zap.String("free", humanize.IBytes(uint64(max(sp.Free, 0)))),
			zap.String("min_free", humanize.IBytes(uint64(sp.MinFree)))}
		if sp.MaxStorage > 0 {
			f = append(f, zap.String("used", humanize.IBytes(uint64(sp.Used))),
				zap.String("max_storage", humanize.IBytes(uint64(sp.MaxStorage))))
		}
		return f
	}
	for _, l := range []struct {
		st         *spaceLogState
		on         bool
		level      zapcore.Level
		start, end string
	}{
		{&e.spaceLog, sp.Full, zap.WarnLevel,
			"outbox storage is short of space: ingest answers 503 storage_full until space returns " +
				"(logged at most once a minute; episodes in between are counted in unlogged_episodes_before)",
			"outbox storage has room again: ingest resumed"},
		{&e.spaceCrit, sp.Critical, zap.ErrorLevel,
			"outbox storage is below its hard reserve (half of min_free): deliveries are held, " +
				"since their outcomes could not be recorded, until space returns",
			"outbox storage is above its hard reserve again: deliveries resumed"},
	} {
		if l.on {
			if ok, n := l.st.raise(now); ok {
				log.Log(l.level, l.start, append(fields(), zap.Int("unlogged_episodes_before", n))...)
			}
		} else if l.st.clear() {
			log.Info(l.end, fields()...)
		}
	}
}

// outcomesRefused reports whether the outbox is below its hard reserve,
// where it refuses outcomes: attempts would then reach endpoints without
// being recorded, and be sent again and again.
func (e *Engine) outcomesRefused() bool {
	sg, ok := e.store.(persist.SpaceGuard)
	return ok && sg.Space().Critical
}

// storageState is the storage gauges' reading of this engine; ok is false
// for an outbox that does not watch its space.
func (e *Engine) storageState() (sp persist.Space, ok bool) {
	sg, ok := e.store.(persist.SpaceGuard)
	if !ok {
		return sp, false
	}
	return sg.Space(), true
}

// OutboxHealth is the state of an outbox that refuses work.
type OutboxHealth struct {
	// State is "full" (ingest refused: 503 storage_full), "critical"
	// (outcomes refused too, deliveries held) or "unavailable" (NATS
	// cannot be reached: ingest answers 503 unavailable).
	State  string `json:"state"`
	Reason string `json:"reason"`
}

// OutboxHealth returns the outbox's trouble, or nil while it takes work.
func (e *Engine) OutboxHealth() *OutboxHealth {
	if h, ok := e.store.(interface{ Health() error }); ok {
		if err := h.Health(); err != nil {
			return &OutboxHealth{State: "unavailable", Reason: err.Error() + ": ingest answers 503 unavailable, deliveries wait"}
		}
	}
	sg, ok := e.store.(persist.SpaceGuard)
	if !ok {
		return nil
	}
	sp := sg.Space()
	if !sp.Full && !sp.Critical {
		return nil
	}
	why := humanize.IBytes(uint64(max(sp.Free, 0))) + " free, under min_free " + humanize.IBytes(uint64(sp.MinFree))
	if sp.Need > sp.MinFree {
		why += ", raised to " + humanize.IBytes(uint64(sp.Need)) + " by the outbox's tables (a compaction may write them again)"
	}
	if sp.MaxStorage > 0 && sp.Used >= sp.MaxStorage {
		why = humanize.IBytes(uint64(sp.Used)) + " used, max_storage " + humanize.IBytes(uint64(sp.MaxStorage))
	}
	if sp.Critical {
		return &OutboxHealth{State: "critical", Reason: why + ": ingest answers 503 storage_full, and deliveries are held until space is freed"}
	}
	return &OutboxHealth{State: "full", Reason: why + ": ingest answers 503 storage_full until there is room again; deliveries go on"}
}
