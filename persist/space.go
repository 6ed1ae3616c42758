package persist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
)

// Badger writes its value log, its write-ahead logs and its tables through
// memory maps of sparse files. A write into such a map when the file system
// has no block left is not an error Badger can return: the kernel sends
// SIGBUS and the whole process dies (and cannot open the directory again
// while the disk stays full). So the outbox never lets its file system run
// dry: the committer measures the free space before each group, refuses
// ingest below MinFree and, below the smaller hard reserve, outcomes too,
// which keeps room for what Badger writes on its own (memtable flushes,
// compactions, value-log GC).
//
// Preallocating (fallocate) the mapped files was considered and not done:
// Badger creates them itself and offers no hook, tables written by
// compactions are mapped the same way and could not be covered, and
// reserving the full size of every mapped file would spend hundreds of MiB
// a sparse file never uses.

// Sizes of Badger's files, set in Open, from which the default MinFree is
// derived.
const (
	// memTableSize bounds one memtable and its write-ahead log; flushing
	// it writes a level-0 table of at most about this size. Resident
	// memory scales with it: each memtable's arena, and the table
	// builders that flush them, which Badger pools (with a million
	// events pending, 32 MiB held 529 MB of anonymous memory, 16 MiB
	// 273 MB, at the same ingest rate). It also bounds one transaction
	// (15% of it); the committer splits a group, and a batch, over as
	// many as it takes (each event stays atomic).
	memTableSize = 16 << 20
	// valueLogFileSize is where the value log moves to a new file. GC
	// only reclaims files other than the newest, rewriting their live
	// entries (at most half of a file, see gcLoop) before deleting them,
	// so small files let space come back on a small disk.
	valueLogFileSize = 64 << 20
)

// DefaultMinFree is the free space below which ingest is refused when
// Options.MinFree is zero. Half of it is the hard reserve below which
// outcomes are refused too, and which the file system must have for the
// outbox to open. It covers what Badger may write with no ingest at all:
// a memtable flush (32 MiB), a level-0 compaction (up to five flushed
// memtables, less the values kept in the value log), a value-log GC
// rewriting half of a 64 MiB file, and the outcomes of the deliveries in
// flight, with room to spare.
const DefaultMinFree = 256 << 20

// ErrStorageFull is returned, wrapped with the numbers, by Ingest while
// the outbox's file system has less free space than Options.MinFree (or
// the outbox holds Options.MaxStorage), and by Record below the hard
// reserve. Nothing of the refused request is stored; it may be retried
// once space returns, which the outbox notices by itself.
var ErrStorageFull = errors.New("outbox storage is full")

// Space is what an outbox knows of its room to write.
type Space struct {
	// Free is the space left on the outbox's file system, in bytes (as
	// last measured, less what was written since); -1 when it cannot be
	// measured on this platform.
	Free int64
	// Used is the space the outbox directory takes, in bytes; measured
	// only when MaxStorage is set.
	Used int64
	// MinFree and MaxStorage are the limits in force (MaxStorage 0: none).
	MinFree    int64
	MaxStorage int64
	// Need is the free space below which ingest is refused (MinFree, or
	// more when Badger's tables raise the reserve); Reserve is the hard
	// reserve.
	Need, Reserve int64
	// Full is set while ingest is refused with ErrStorageFull.
	Full bool
	// Critical is set while outcomes are refused too: the free space is
	// below the hard reserve (half of MinFree).
	Critical bool
}

// SpaceGuard is implemented by stores that watch their free space. The
// engine reads it to pause deliveries whose outcomes could not be
// recorded, to export the storage gauges, and to apply a reload's limits.
type SpaceGuard interface {
	// Space returns the current state; it measures again if the last
	// measurement is older than a tenth of a second.
	Space() Space
	// SetSpaceLimits changes MinFree and MaxStorage, as in Options: zero
	// MinFree means DefaultMinFree, zero MaxStorage no cap.
	SetSpaceLimits(minFree, maxStorage int64)
}

// spaceProbe measures a directory: the free space of its file system and
// the space its files take. Tests replace it.
type spaceProbe interface {
	free(dir string) (int64, error)
	used(dir string) (int64, error)
}

// spaceEvery is how long a measurement is trusted: writes in between are
// debited from it, so statfs runs at most ten times a second.
const spaceEvery = 100 * time.Millisecond

// resumeMargin is how much more than MinFree must be free before ingest
// resumes, so that it does not flap at the threshold.
func resumeMargin(minFree int64) int64 { return min(minFree/16, 16<<20) }

type spaceGuard struct {
	dir      string
	probe    spaceProbe
	now      func() time.Time
	onChange func(Space)

	mu         sync.Mutex
	minFree    int64
	maxStorage int64
	measured   time.Time // zero: measure at the next look
	free, used int64     // as measured, less the writes debited since
	unknown    bool      // the platform cannot measure free space
	full, crit bool
	// lsm is the size of Badger's tables: read at open, then every
	// lsmEvery by the outbox's tablesLoop (a directory read, kept off the
	// committer, which measures the free space).
	lsm int64
}

func newSpaceGuard(dir string, minFree, maxStorage int64, probe spaceProbe, now func() time.Time, onChange func(Space)) *spaceGuard {
	if probe == nil {
		probe = osProbe{}
	}
	if minFree <= 0 {
		minFree = DefaultMinFree
	}
	return &spaceGuard{dir: dir, probe: probe, now: now, onChange: onChange,
		minFree: minFree, maxStorage: max(maxStorage, 0)}
}

// reserve is the hard reserve: below it outcomes are refused and the
// outbox does not open. It is half of MinFree, or the size of Badger's
// tables (the LSM tree) if that is more: a compaction may write it all
// again before it deletes the old tables, and writing into a memory map
// on a full disk kills the process (SIGBUS). Ingest stops half of
// MinFree above it.
func (g *spaceGuard) reserve() int64 { return max(g.minFree/2, g.lsm) }

// need is the free space below which ingest is refused: MinFree, or the
// reserve and half of MinFree when the LSM tree makes the reserve larger.
func (g *spaceGuard) need() int64 { return g.reserve() + g.minFree/2 }

// lsmEvery is how often the size of Badger's tables is read again.
const lsmEvery = time.Second

// tablesLoop reads the size of Badger's tables every lsmEvery.
func (s *Badger) tablesLoop() {
	defer s.wg.Done()
	s.every(lsmEvery, func() bool {
		s.space.readTables()
		return true
	})
}

// readTables reads the size of Badger's tables again.
func (g *spaceGuard) readTables() {
	n := tablesSize(g.dir)
	g.mu.Lock()
	g.lsm = n
	g.mu.Unlock()
}

// tablesSize is the size of the Badger tables (*.sst) in dir.
func tablesSize(dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".sst") {
			continue
		}
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// measure reads the probe if the last reading is stale. Must hold g.mu.
func (g *spaceGuard) measure() {
	now := g.now()
	if !g.measured.IsZero() && now.Sub(g.measured) < spaceEvery && now.After(g.measured) {
		return
	}
	g.measured = now
	free, err := g.probe.free(existingDir(g.dir))
	g.unknown = err != nil
	g.free = free
	if g.maxStorage > 0 {
		if used, err := g.probe.used(g.dir); err == nil {
			g.used = used
		}
	}
}

// state decides Full and Critical from the current reading, with ingest
// and outcome bytes about to be written, and reports a change. Must hold
// g.mu.
func (g *spaceGuard) state(ingest, outcome int64) Space {
	// Each state ends only with a margin beyond the line that started
	// it, so that it does not flap there. For the hard reserve this is
	// also what keeps the dispatcher's look (with no bytes about to be
	// written) from taking up deliveries whose outcomes the committer
	// then refuses: each would be sent again, and again.
	need, limit, reserve := g.need(), g.maxStorage, g.reserve()
	if g.full {
		need += resumeMargin(g.minFree)
		limit -= resumeMargin(g.maxStorage)
	}
	if g.crit {
		reserve += resumeMargin(g.minFree)
	}
	size := ingest + outcome
	// Without a free-space reading only max_storage applies.
	full := (!g.unknown && g.free-size < need) || (g.maxStorage > 0 && g.used+size > limit)
	crit := !g.unknown && g.free-outcome < reserve
	if full != g.full || crit != g.crit {
		g.full, g.crit = full, crit
		if g.onChange != nil {
			g.onChange(g.snapshot())
		}
	}
	return g.snapshot()
}

func (g *spaceGuard) snapshot() Space {
	sp := Space{Free: g.free, Used: g.used, MinFree: g.minFree, MaxStorage: g.maxStorage, Full: g.full, Critical: g.crit,
		Need: g.need(), Reserve: g.reserve()}
	if g.unknown {
		sp.Free = -1
	}
	return sp
}

// admit says whether a group may write size bytes of ingest and outcome
// bytes of outcomes; what it admits is debited from the free space.
func (g *spaceGuard) admit(ingest, outcome int64) (ingestErr, outcomeErr error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.measure()
	sp := g.state(ingest, outcome)
	if sp.Full && ingest > 0 {
		ingestErr = g.fullError()
		ingest = 0
	}
	if sp.Critical && outcome > 0 {
		outcomeErr = fmt.Errorf("%w: %s free on the file system of %s, below the hard reserve of %s (half of min_free, or the size of the outbox's tables if larger)",
			ErrStorageFull, humanize.IBytes(uint64(max(g.free, 0))), g.dir, humanize.IBytes(uint64(g.reserve())))
		outcome = 0
	}
	g.free -= ingest + outcome
	g.used += ingest + outcome
	return ingestErr, outcomeErr
}

func (g *spaceGuard) fullError() error {
	if g.maxStorage > 0 && (g.unknown || g.free >= g.need()) {
		return fmt.Errorf("%w: %s holds %s, max_storage is %s", ErrStorageFull,
			g.dir, humanize.IBytes(uint64(g.used)), humanize.IBytes(uint64(g.maxStorage)))
	}
	if need := g.need(); need > g.minFree {
		return fmt.Errorf("%w: %s free on the file system of %s, under the %s kept free (min_free is %s; "+
			"the outbox's tables, %s, raise it: a compaction may write them again)", ErrStorageFull,
			humanize.IBytes(uint64(max(g.free, 0))), g.dir, humanize.IBytes(uint64(need)),
			humanize.IBytes(uint64(g.minFree)), humanize.IBytes(uint64(g.lsm)))
	}
	return fmt.Errorf("%w: %s free on the file system of %s, min_free is %s", ErrStorageFull,
		humanize.IBytes(uint64(max(g.free, 0))), g.dir, humanize.IBytes(uint64(g.minFree)))
}

// space returns the current state, measuring again if stale.
func (g *spaceGuard) space() Space {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.measure()
	return g.state(0, 0)
}

// setLimits applies new limits at the next look.
func (g *spaceGuard) setLimits(minFree, maxStorage int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if minFree <= 0 {
		minFree = DefaultMinFree
	}
	g.minFree, g.maxStorage = minFree, max(maxStorage, 0)
	g.measured = time.Time{}
}

// checkOpen refuses to open the outbox on a file system with less than
// the hard reserve free: Badger's first writes (replaying its logs, a
// new memtable, a flush) would then crash the process.
func (g *spaceGuard) checkOpen() error {
	g.readTables()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.measure()
	if g.unknown || g.free >= g.reserve() {
		return nil
	}
	return fmt.Errorf("outbox %s cannot open: its file system has %s free, less than the %s the outbox "+
		"keeps in reserve (half of min_free, which is %s, or the size of its tables if larger: a compaction "+
		"may write them again); free some space there, or lower min_free if the disk is small",
		g.dir, humanize.IBytes(uint64(max(g.free, 0))), humanize.IBytes(uint64(g.reserve())),
		humanize.IBytes(uint64(g.minFree)))
}

// existingDir returns dir, or its nearest ancestor that exists: the
// outbox directory may not have been created yet.
func existingDir(dir string) string {
	for {
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// admit checks a commit group against the free space: the ingests, or the
// outcomes, that may not be written are told ErrStorageFull, each request
// whole, and left out of the group.
func (s *Badger) admit(ins []*ingestReq, recs []recordReq) ([]*ingestReq, []recordReq) {
	var in, out int64
	for _, r := range ins {
		// Written twice until the next checkpoint: to Badger and to the
		// journal.
		in += 2 * int64(r.size)
	}
	for _, r := range recs {
		out += int64(r.cost())
	}
	inErr, outErr := s.space.admit(in, out)
	if inErr != nil {
		for _, r := range ins {
			r.err = inErr
			close(r.done)
		}
		ins = ins[:0]
	}
	if outErr != nil {
		for _, r := range recs {
			r.done(outErr)
		}
		recs = recs[:0]
	}
	return ins, recs
}

// Space implements SpaceGuard.
func (s *Badger) Space() Space { return s.space.space() }

// SetSpaceLimits implements SpaceGuard.
func (s *Badger) SetSpaceLimits(minFree, maxStorage int64) { s.space.setLimits(minFree, maxStorage) }

var _ SpaceGuard = (*Badger)(nil)
