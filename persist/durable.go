package persist

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Durability. Badger runs with SyncWrites off: a commit writes into the
// memory-mapped write-ahead log and value log and is visible to every
// read at once, but is not on disk yet. An ingest is made durable by the
// journal (journal.go); what else must be durable before it is
// acknowledged (a duplicate's answer, backfill's AddDeliveries, route
// states) waits for the syncer, which syncs both logs once for
// everything committed before it started, and retires the journal
// segments that holds (a checkpoint). That is group commit without the
// committer waiting: it builds and commits the next group while the logs
// sync, and outcomes, which need no sync (a lost outcome is one more
// attempt), never wait for one. With SyncWrites on, Badger synced the
// logs for every transaction, in series with the committer.
//
// A sync round syncs the current write-ahead log and value-log file
// (DB.Sync), and every file of either log that was current at some point
// since the last round: Badger moves on to a new file when one is full
// and, with SyncWrites off, does not sync the old one, whose tail may
// hold writes committed before the round began.

// Observer is told how long the Badger outbox takes to make writes
// durable; Options.Observe. Its methods run on the store's goroutines
// and must return quickly.
type Observer interface {
	// SyncRound: one sync round of the journal (a write and an
	// fdatasync for the ingests committed meanwhile) took d.
	SyncRound(d time.Duration)
	// IngestWait: an Ingest call waited commit for its transaction (the
	// queue for the committer included) and then sync for a journal
	// round to put it on disk. The two are the part of an ingest's
	// answer time spent in the outbox.
	IngestWait(commit, sync time.Duration)
}

// syncIdle is how often the syncer syncs commits that nothing waits for
// (outcomes), so a power failure loses at most about that much of them.
const syncIdle = time.Second

// syncer is the state of syncLoop.
type syncer struct {
	mu      sync.Mutex
	waiting []func(error)
	// ckpt waits for a round that also retires the journal's older
	// segments (checkpoint).
	ckpt []func(error)
	// stopped is set by the last round: later callers sync themselves.
	stopped bool
	// wake is signalled when something starts waiting.
	wake chan struct{}
	// commits counts the committer's commits; synced is the count the
	// last successful round covered (syncLoop only).
	commits atomic.Uint64
	synced  uint64
	// done is closed when the committer has returned: the syncer makes
	// its last round and returns too.
	done chan struct{}
	// logsMu serializes rounds: the syncer's, and those made directly
	// once it has stopped.
	logsMu sync.Mutex
	logs   logFiles
}

func newSyncer(dir string) (*syncer, error) {
	logs, err := openLogFiles(dir)
	if err != nil {
		return nil, err
	}
	return &syncer{wake: make(chan struct{}, 1), done: make(chan struct{}), logs: logs}, nil
}

// afterSync hands fns to the syncer: each is called once everything
// committed before this call is on disk, or with the error that kept it
// from being synced. Once the syncer has stopped (the store is closing)
// it syncs at once: its callers keep the database open until they return.
func (s *Badger) afterSync(fns ...func(error)) {
	if len(fns) == 0 {
		return
	}
	if !s.sync.enqueue(&s.sync.waiting, fns...) {
		err := s.syncLogs()
		for _, fn := range fns {
			fn(err)
		}
	}
}

// enqueue adds fns to list (waiting or ckpt) for the next round and
// wakes the syncer, unless it has stopped.
func (sy *syncer) enqueue(list *[]func(error), fns ...func(error)) bool {
	sy.mu.Lock()
	if sy.stopped {
		sy.mu.Unlock()
		return false
	}
	*list = append(*list, fns...)
	sy.mu.Unlock()
	select {
	case sy.wake <- struct{}{}:
	default:
	}
	return true
}

// durable waits until everything committed so far, by the committer or
// directly, is on disk.
func (s *Badger) durable() error {
	done := make(chan error, 1)
	s.afterSync(func(err error) { done <- err })
	return <-done
}

// checkpoint waits until everything committed so far is in Badger's logs
// on disk and no journal segment holds an ingest committed before the
// call: what is deleted after it returns nil cannot come back in a
// replay.
func (s *Badger) checkpoint() error {
	done := make(chan error, 1)
	if !s.sync.enqueue(&s.sync.ckpt, func(err error) { done <- err }) {
		return ErrClosed
	}
	return <-done
}

func (s *Badger) syncLoop() {
	defer s.wg.Done()
	sy := s.sync
	t := time.NewTicker(syncIdle)
	defer t.Stop()
	for {
		last := false
		select {
		case <-sy.wake:
		case <-t.C:
		case <-sy.done:
			last = true
		}
		sy.mu.Lock()
		waiting, ckpt := sy.waiting, sy.ckpt
		sy.waiting, sy.ckpt = nil, nil
		sy.stopped = last
		sy.mu.Unlock()
		commits := sy.commits.Load()
		var err error
		if len(waiting)+len(ckpt) > 0 || commits != sy.synced {
			// A checkpoint: the journal's older segments hold only what
			// was committed before the move, which this round syncs.
			seg, rerr := s.journal.rotate()
			err = s.syncLogs()
			if err == nil {
				sy.synced = commits
				if rerr == nil && !s.opts.noCheckpoint {
					rerr = removeJournalBefore(s.opts.Dir, seg)
				}
				if rerr != nil {
					rerr = fmt.Errorf("outbox journal: %w", rerr)
					s.opts.Logger.Errorf("%v", rerr)
				}
			} else {
				s.opts.Logger.Errorf("syncing the outbox to disk: %v", err)
			}
			for _, fn := range waiting {
				fn(err)
			}
			for _, fn := range ckpt {
				fn(errors.Join(err, rerr))
			}
		}
		if last {
			// The committer has returned: nothing more is journaled, and
			// once Badger's logs are synced the journal holds nothing
			// they do not.
			s.journal.close()
			if err == nil && !s.opts.noCheckpoint {
				if err := removeJournalBefore(s.opts.Dir, math.MaxUint64); err != nil {
					s.opts.Logger.Errorf("outbox journal: %v", err)
				}
			}
			return
		}
	}
}

// syncLogs puts everything committed so far on disk.
func (s *Badger) syncLogs() error {
	s.sync.logsMu.Lock()
	defer s.sync.logsMu.Unlock()
	if s.opts.beforeSync != nil {
		s.opts.beforeSync()
	}
	logs := &s.sync.logs
	if err := logs.syncRetired(); err != nil {
		return err
	}
	if logs.memOK && logs.vOK {
		err := logs.syncCurrent()
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// A drop (Compact) deletes the current write-ahead log before it
		// creates the next one.
	}
	// Not following both logs, or between two files: Badger's own.
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("syncing the outbox logs: %w", err)
	}
	return nil
}

// logFiles follows the files of Badger's two logs: the write-ahead log
// of the memtable (NNNNN.mem) and the value log (NNNNNN.vlog). Both are
// numbered in sequence and a file gets no more writes once the next one
// exists, so a round learns that files were retired, and which, by
// looking for the successor of the newest it knows: two stat calls when
// nothing moved.
type logFiles struct {
	dir        string
	mem, vlog  uint64 // newest known file numbers
	memOK, vOK bool   // whether one is known yet
	// The newest files, kept open for syncCurrent.
	memF, vlogF   *os.File
	memFN, vlogFN uint64
}

func openLogFiles(dir string) (logFiles, error) {
	l := logFiles{dir: dir}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return l, err
	}
	for _, e := range entries {
		if n, ok := logNumber(e.Name(), ".mem"); ok && (!l.memOK || n > l.mem) {
			l.mem, l.memOK = n, true
		}
		if n, ok := logNumber(e.Name(), ".vlog"); ok && (!l.vOK || n > l.vlog) {
			l.vlog, l.vOK = n, true
		}
	}
	return l, nil
}

func logNumber(name, ext string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, ext)
	if !ok || digits == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

func (l *logFiles) memPath(n uint64) string {
	return filepath.Join(l.dir, fmt.Sprintf("%05d.mem", n))
}

func (l *logFiles) vlogPath(n uint64) string {
	return filepath.Join(l.dir, fmt.Sprintf("%06d.vlog", n))
}

// syncCurrent syncs the newest file of each log (what DB.Sync syncs).
// It starts both files' write-back before waiting for either, so their
// writes reach the disk together, then fsyncs them one after the other
// on this goroutine. Under load that made rounds about 15% shorter than
// two fsyncs in parallel, whose second goroutine waited a quarter of a
// millisecond (p50) to be scheduled before its fsync could start.
func (l *logFiles) syncCurrent() error {
	var err error
	if l.memF, err = l.reopen(l.memF, &l.memFN, l.mem, l.memPath); err != nil {
		return err
	}
	if l.vlogF, err = l.reopen(l.vlogF, &l.vlogFN, l.vlog, l.vlogPath); err != nil {
		return err
	}
	startWriteback(l.vlogF)
	startWriteback(l.memF)
	if err := l.vlogF.Sync(); err != nil {
		return fmt.Errorf("syncing the outbox's value log: %w", err)
	}
	if err := l.memF.Sync(); err != nil {
		return fmt.Errorf("syncing the outbox's write-ahead log: %w", err)
	}
	return nil
}

// reopen returns an open handle of file n, reusing f if it is that file.
func (l *logFiles) reopen(f *os.File, fn *uint64, n uint64, path func(uint64) string) (*os.File, error) {
	if f != nil && *fn == n {
		return f, nil
	}
	nf, err := os.Open(path(n))
	if err != nil {
		return f, fmt.Errorf("opening the outbox's current log file: %w", err)
	}
	if f != nil {
		f.Close()
	}
	*fn = n
	return nf, nil
}

// close closes the handles syncCurrent keeps.
func (l *logFiles) close() {
	for _, f := range []*os.File{l.memF, l.vlogF} {
		if f != nil {
			f.Close()
		}
	}
	l.memF, l.vlogF = nil, nil
}

// syncRetired syncs the files that were retired since the last call.
func (l *logFiles) syncRetired() error {
	if err := l.follow(&l.mem, &l.memOK, l.memPath); err != nil {
		return err
	}
	return l.follow(&l.vlog, &l.vOK, l.vlogPath)
}

// follow advances *n past every file that has a successor, syncing it.
// A file that is gone needs nothing: a retired write-ahead log is
// deleted once its memtable is in a synced table, a value-log file once
// value-log GC moved what it held to the current file.
func (l *logFiles) follow(n *uint64, known *bool, path func(uint64) string) error {
	if !*known {
		// No file of this log when the store opened (Badger creates both
		// at open, so not seen): rounds fall back to DB.Sync.
		return nil
	}
	for i := 0; i < 1<<20; i++ {
		if _, err := os.Stat(path(*n + 1)); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := syncFile(path(*n)); err != nil {
			return err
		}
		*n++
	}
	return nil
}

// syncFile syncs a retired log file; tests watch it.
var syncFile = func(path string) error {
	err := syncPath(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	return nil
}

// syncPath fsyncs a file or a directory.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
