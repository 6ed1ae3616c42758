package persist

import (
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The group commit: Ingest and Record hand their writes to one committer
// goroutine, which drains whatever is waiting into one transaction and
// commits it; the syncer (durable.go) then makes it durable once for
// every group committed meanwhile, so concurrent requests share an fsync
// and the committer never waits for one.

// maxGroupBytes bounds the writes (payloads included) the committer
// gathers into one group. Payloads go to the value log and count little
// against Badger's transaction limit (15% of memTableSize), so a group
// usually fits in one transaction; one that does not is split.
const maxGroupBytes = 4 << 20

// ingestReq is one Ingest call. Its elements are committed as units of
// their own, so a big batch may span transactions (each element stays
// atomic, and the call returns once all are durable); done is closed
// when the last one is settled.
type ingestReq struct {
	batch []Ingest
	res   []IngestResult
	// recs holds the event records applyIngest encoded, for the journal.
	recs [][]byte
	size int
	done chan struct{}
	// submitted and committed time the two waits Options.Observe is
	// told of: set only when it is.
	submitted, committed time.Time

	mu   sync.Mutex
	left int // elements not settled yet
	err  error
}

// settle records how one element ended.
func (r *ingestReq) settle(err error) {
	r.mu.Lock()
	if err != nil && r.err == nil {
		r.err = err
	}
	r.left--
	last := r.left == 0
	r.mu.Unlock()
	if last {
		close(r.done)
	}
}

// recordReq is an outcome to record or, with apply set, another write
// that must be ordered with outcomes (a requeue); size is then its
// estimated bytes.
type recordReq struct {
	o     Outcome
	done  func(error)
	apply func(txn *badger.Txn) error
	size  int
	// durable delays done until the write is synced, as for an ingest;
	// outcomes and requeues need not wait.
	durable bool
}

func (r recordReq) cost() int {
	if r.apply != nil {
		return r.size
	}
	return 512
}

func (s *Badger) commitLoop() {
	defer s.wg.Done()
	// The syncer's last round comes after the last commit.
	defer close(s.sync.done)
	var (
		ins  []*ingestReq
		recs []recordReq
	)
	for {
		ins, recs = ins[:0], recs[:0]
		stopping := false
		select {
		case r := <-s.ingestCh:
			ins = append(ins, r)
		case r := <-s.recordCh:
			recs = append(recs, r)
		case <-s.stop:
			// closed is set before stop is closed, so nothing new will be
			// submitted: commit what is queued and return.
			stopping = true
		}
		// Take everything else that is already waiting: this is the
		// group in group commit.
		size := 0
		for _, r := range ins {
			size += r.size
		}
	drain:
		for stopping || size < maxGroupBytes {
			select {
			case r := <-s.ingestCh:
				ins = append(ins, r)
				size += r.size
			case r := <-s.recordCh:
				recs = append(recs, r)
				size += r.cost()
			default:
				break drain
			}
		}
		if len(ins)+len(recs) > 0 {
			ins, recs = s.admit(ins, recs)
		}
		if len(ins)+len(recs) > 0 {
			s.commitGroup(ins, recs)
		}
		if stopping {
			return
		}
	}
}

// unit is one submission's writes; apply may be re-run in a new
// transaction when a group has to be split. A durable unit that commits
// is finished by the syncer.
type unit struct {
	apply   func(txn *badger.Txn) error
	finish  func(err error)
	durable bool
	// ing and idx name an ingest's element: it is durable once its
	// journal record is on disk rather than once Badger's logs are.
	ing *ingestReq
	idx int
}

func (s *Badger) commitGroup(ins []*ingestReq, recs []recordReq) {
	// A flush of the memtables (flattenAll) blocks Badger's writes: a
	// group waits for it rather than fail.
	s.flushGate.RLock()
	defer s.flushGate.RUnlock()
	units := make([]unit, 0, len(ins)+len(recs))
	// settled marks the units already told how they ended: a group split
	// over several transactions may panic after some were, and settling
	// one twice would close a done channel twice and crash the process
	// from the recover. The journal and the syncer settle units on their
	// own goroutines, so a unit is settled by whoever marks it first.
	var settled []atomic.Bool
	for _, r := range ins {
		for i := range r.batch {
			u := len(units)
			units = append(units, unit{
				durable: true,
				apply: func(txn *badger.Txn) error {
					res, err := s.applyIngest(txn, r.batch[i:i+1], r.recs[i:i+1])
					if err == nil {
						r.res[i] = res[0]
					}
					return err
				},
				ing: r,
				idx: i,
				finish: func(err error) {
					if settled[u].CompareAndSwap(false, true) {
						r.settle(err)
					}
				},
			})
		}
	}
	for _, r := range recs {
		u := len(units)
		units = append(units, unit{
			durable: r.durable,
			apply: func(txn *badger.Txn) error {
				if r.apply != nil {
					return r.apply(txn)
				}
				return s.applyRecord(txn, r.o)
			},
			finish: func(err error) {
				if !settled[u].CompareAndSwap(false, true) {
					return
				}
				if err == nil && r.apply == nil {
					// Whatever claim the move was made under has ended.
					delete(s.moved, r.o.Delivery.ID)
				}
				r.done(err)
			},
		})
	}
	settled = make([]atomic.Bool, len(units))
	defer func() {
		if v := recover(); v != nil {
			err := fmt.Errorf("outbox committer panic: %v\n%s", v, debug.Stack())
			s.opts.Logger.Errorf("%v", err)
			// Units committed and waiting for the hand-over to the
			// syncer are not settled yet: they get err below instead.
			clear(s.syncing)
			s.syncing = s.syncing[:0]
			clear(s.journaling)
			s.journaling = s.journaling[:0]
			for i, u := range units {
				if !settled[i].Load() {
					u.finish(err)
				}
			}
		}
	}()
	s.commitUnits(units)
	if s.opts.Observe != nil {
		now := time.Now()
		for _, r := range ins {
			r.committed = now
		}
	}
	s.journalUnits(s.journaling)
	clear(s.journaling)
	s.journaling = s.journaling[:0]
	s.afterSync(s.syncing...)
	clear(s.syncing)
	s.syncing = s.syncing[:0]
}

// journalUnits hands the group's committed ingests to the journal, which
// settles them once their records are on disk (journal.go). A duplicate
// writes no record and waits for the syncer instead: the event it names
// was committed before it, but its own journal write may have failed
// (its ingest answered with the error), and only a sync of Badger's
// logs puts it on disk then.
func (s *Badger) journalUnits(units []unit) {
	var (
		fns []func(error)
		ins []unit
		n   int
	)
	for _, u := range units {
		if u.ing.res[u.idx].Duplicate {
			s.syncing = append(s.syncing, u.finish)
			continue
		}
		fns = append(fns, u.finish)
		ins = append(ins, u)
		n += journalIngestSize(&u.ing.batch[u.idx], u.ing.recs[u.idx])
	}
	if len(ins) == 0 {
		return
	}
	data := journalBufs.Get().(*[]byte)
	*data = slices.Grow(*data, n)
	now := s.now()
	for _, u := range ins {
		*data = appendJournalIngest(*data, &u.ing.batch[u.idx], u.ing.recs[u.idx], now)
		u.ing.recs[u.idx] = nil
	}
	s.journal.submit(journalOp{data: data, fns: fns})
}

// commitUnits commits units in as few transactions as they fit in and
// tells every unit how its transaction ended.
func (s *Badger) commitUnits(units []unit) {
	for len(units) > 0 {
		units = units[s.commitPrefix(units):]
	}
}

// settle tells u how its transaction ended: at once, unless it is durable
// and committed, in which case the journal (an ingest) or the syncer tells
// it (once the group is handed over, at the end of commitGroup).
func (s *Badger) settle(u unit, err error) {
	if err == nil && u.durable {
		if u.ing != nil {
			s.journaling = append(s.journaling, u)
			return
		}
		s.syncing = append(s.syncing, u.finish)
		return
	}
	u.finish(err)
}

// commit commits txn and counts it for the syncer.
func (s *Badger) commit(txn *badger.Txn) error {
	err := txn.Commit()
	if err == nil {
		s.sync.commits.Add(1)
	}
	return err
}

// commitPrefix commits the leading units that fit in one transaction and
// returns how many it settled.
func (s *Badger) commitPrefix(units []unit) int {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	for i, u := range units {
		err := u.apply(txn)
		if err == nil {
			continue
		}
		// The failing unit's partial writes are in txn: commit the units
		// before it on their own.
		txn.Discard()
		if errors.Is(err, badger.ErrTxnTooBig) {
			if i > 0 {
				return s.commitExactly(units[:i])
			}
			err = ErrTooLarge
		}
		s.commitExactly(units[:i])
		s.settle(u, err)
		return i + 1
	}
	err := s.commit(txn)
	for _, u := range units {
		s.settle(u, err)
	}
	return len(units)
}

// commitExactly commits units that are known to fit in one transaction.
func (s *Badger) commitExactly(units []unit) int {
	if len(units) == 0 {
		return 0
	}
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	var err error
	for _, u := range units {
		if err = u.apply(txn); err != nil {
			break
		}
	}
	if err == nil {
		err = s.commit(txn)
	}
	for _, u := range units {
		s.settle(u, err)
	}
	return len(units)
}
