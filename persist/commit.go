package persist

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/dgraph-io/badger/v4"
)

// The group commit: Ingest and Record hand their writes to one committer
// goroutine, which drains whatever is waiting into one transaction and
// commits it; the syncer (durable.go) then makes it durable once for
// every group committed meanwhile, so concurrent requests share an fsync
// and the committer never waits for one.

// maxGroupBytes bounds the writes the committer puts into one transaction:
// well under Badger's batch limit for memTableSize, so a group rarely has
// to be split.
const maxGroupBytes = 4 << 20

type ingestReq struct {
	batch []Ingest
	res   []IngestResult
	err   error
	size  int
	done  chan struct{}
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
}

func (s *Badger) commitGroup(ins []*ingestReq, recs []recordReq) {
	// settled marks the units already told how they ended: a group split
	// over several transactions may panic after some were, and closing a
	// done channel twice would crash the process from the recover.
	settled := make([]bool, len(ins)+len(recs))
	defer func() {
		if v := recover(); v != nil {
			err := fmt.Errorf("outbox committer panic: %v\n%s", v, debug.Stack())
			s.opts.Logger.Errorf("%v", err)
			// Units committed and waiting for the hand-over to the
			// syncer are not settled yet: they get err below instead.
			clear(s.syncing)
			s.syncing = s.syncing[:0]
			for i, r := range ins {
				if !settled[i] {
					r.err = err
					close(r.done)
				}
			}
			for i, r := range recs {
				if !settled[len(ins)+i] {
					r.done(err)
				}
			}
		}
	}()
	units := make([]unit, 0, len(ins)+len(recs))
	for i, r := range ins {
		units = append(units, unit{
			durable: true,
			apply: func(txn *badger.Txn) error {
				res, err := s.applyIngest(txn, r.batch)
				r.res = res
				return err
			},
			finish: func(err error) {
				settled[i] = true
				r.err = err
				close(r.done)
			},
		})
	}
	for i, r := range recs {
		units = append(units, unit{
			durable: r.durable,
			apply: func(txn *badger.Txn) error {
				if r.apply != nil {
					return r.apply(txn)
				}
				return s.applyRecord(txn, r.o)
			},
			finish: func(err error) {
				settled[len(ins)+i] = true
				if err == nil && r.apply == nil {
					// Whatever claim the move was made under has ended.
					delete(s.moved, r.o.Delivery.ID)
				}
				r.done(err)
			},
		})
	}
	s.commitUnits(units)
	s.afterSync(s.syncing...)
	clear(s.syncing)
	s.syncing = s.syncing[:0]
}

// commitUnits commits units in as few transactions as they fit in and
// tells every unit how its transaction ended.
func (s *Badger) commitUnits(units []unit) {
	for len(units) > 0 {
		units = units[s.commitPrefix(units):]
	}
}

// settle tells u how its transaction ended: at once, unless it is durable
// and committed, in which case the syncer tells it (once the group is
// handed over, at the end of commitGroup).
func (s *Badger) settle(u unit, err error) {
	if err == nil && u.durable {
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
