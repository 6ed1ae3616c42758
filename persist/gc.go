package persist

import (
	"cmp"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// gcNowEvery bounds the extra value-log GC runs that refused ingest asks
// for, on top of the GCInterval ticker.
const gcNowEvery = time.Minute

// gcLoop runs value-log GC on a ticker, and soon after ingest starts
// being refused for space, since GC is what gives space back.
func (s *Badger) gcLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.GCInterval)
	defer t.Stop()
	var lastNow time.Time
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.gcNow:
			if now := time.Now(); now.Sub(lastNow) >= gcNowEvery {
				lastNow = now
			} else {
				continue
			}
		}
		// A GC run rewrites the live entries of one value-log file (at
		// most half of it, at this discard ratio) before it deletes the
		// file: skip it when that might not fit.
		sp := s.space.space()
		if sp.Free >= 0 && sp.Free < cmp.Or(s.opts.vlogFileSize, valueLogFileSize) {
			continue
		}
		for i := 0; i < 16; i++ {
			err := s.runValueLogGC(0.5)
			if err == nil {
				continue
			}
			if i == 0 && sp.Full && errors.Is(err, badger.ErrNoRewrite) && s.flattenFits(sp) {
				// Ingest is refused and GC finds nothing: Badger learns
				// what in the value log is garbage only from compactions,
				// and with nothing written (ingest refused, deliveries
				// done) none may come, so space whose retention is over
				// would never come back. Compact it all, then look again.
				if ferr := s.flattenAll(); ferr != nil {
					s.opts.Logger.Warningf("compacting the outbox to reclaim space: %v", ferr)
					break
				}
				continue
			}
			break
		}
	}
}

// flattenFits says whether compacting the whole LSM tree (which writes
// at most its size again, and a memtable) leaves the hard reserve free.
func (s *Badger) flattenFits(sp Space) bool {
	if sp.Free < 0 {
		return false
	}
	lsm, _ := s.db.Size()
	return sp.Free-lsm-int64(cmp.Or(s.opts.memTableSize, memTableSize)) > sp.Reserve
}

// runValueLogGC runs one round of value-log GC, which rewrites the live
// entries of one file to the current one and deletes the old file. With
// SyncWrites off Badger deletes it before the rewritten entries are
// synced, which a power failure could turn into lost events: an iterator
// held open meanwhile makes Badger put the deletion off until the
// iterator is closed, which happens once the rewrites are synced.
func (s *Badger) runValueLogGC(ratio float64) error {
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{0xff, 0xff, 0xff}})
	err := s.db.RunValueLogGC(ratio)
	if serr := s.durable(); serr != nil {
		s.opts.Logger.Errorf("value-log GC: %v", serr)
		if err == nil {
			err = serr
		}
	}
	it.Close()
	return err
}

// sweepInterval is how often the sweeper deletes the events whose
// expiry has come (see evstate.go). Look-ups treat an expired event as
// gone before that; the sweep gives its space back, at the cadence of
// Badger's own one-second TTLs.
const sweepInterval = time.Second

// sweepBatch bounds the events one committer unit of the sweeper deletes.
const sweepBatch = 1024

// sweepLoop runs the sweeper every sweepInterval.
func (s *Badger) sweepLoop() {
	defer s.wg.Done()
	every := sweepInterval
	if s.opts.sweepEvery != 0 {
		every = s.opts.sweepEvery
	}
	if every < 0 {
		return
	}
	s.every(every, func() bool {
		err := s.sweep()
		if err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrStorageFull) {
			s.opts.Logger.Warningf("deleting expired events: %v", err)
		}
		return true
	})
}

// every runs fn every d until the store closes or fn returns false.
func (s *Badger) every(d time.Duration, fn func() bool) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if !fn() {
			return
		}
	}
}

// sweepFullEvery is how many sweeps seek from where the last one ended
// before one looks at every sweeper entry again.
const sweepFullEvery = 60

// sweep deletes every event whose expiry has come, with its state, its
// time index entry and its sweeper entry, in units of sweepBatch
// ordered with outcomes. It writes nothing when none is due.
//
// An expiry is written in the future (retention is positive), so once
// every entry due by a second is swept, later ones are due from that
// second on: the next sweep seeks there, past the deletion markers of
// those swept, which the iterator would otherwise step over until
// compactions drop them. A full look every sweepFullEvery sweeps
// catches any entry written behind that second (the wall clock stepped
// back, or a commit took longer than a retention of a second); look-ups
// treat its event as gone meanwhile.
func (s *Badger) sweep() error {
	from := s.sweptTo.Load()
	if s.sweeps.Add(1)%sweepFullEvery == 0 {
		from = 0
	}
	for {
		now := wallSeconds()
		keys, err := s.dueExpiries(from, now, sweepBatch)
		if err != nil || len(keys) == 0 {
			if err == nil {
				s.sweptTo.Store(now)
			}
			return err
		}
		// Nothing of what is swept may be left in the journal, whose
		// replay would bring it back (journal.go). An expiry entry read
		// above was written by an outcome the committer took after the
		// event's ingest was handed to the journal, so the checkpoint
		// retires the segment that holds it.
		if err := s.checkpoint(); err != nil {
			return err
		}
		done := make(chan error, 1)
		req := recordReq{
			apply: func(txn *badger.Txn) error { return applySweep(txn, keys) },
			done:  func(err error) { done <- err },
			// Deletions free space: none is counted against the space
			// guard, which so admits a sweep below the hard reserve
			// when no outcome is committed with it.
			size: 0,
		}
		if !s.submit(req) {
			return ErrClosed
		}
		if err := <-done; err != nil {
			return err
		}
		if len(keys) < sweepBatch {
			s.sweptTo.Store(now)
			return nil
		}
	}
}

// dueExpiries returns up to limit sweeper entries due from second from
// to second now.
func (s *Badger) dueExpiries(from, now int64, limit int) ([][]byte, error) {
	var keys [][]byte
	err := s.view(func(txn *badger.Txn) error {
		prefix := []byte{pExpiry, '|'}
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(expiryKey(from, "")); it.ValidForPrefix(prefix) && len(keys) < limit; it.Next() {
			k := it.Item().Key()
			if exp, _, ok := parseExpiryKey(k); ok && exp > now {
				break
			}
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	return keys, err
}

// applySweep deletes the events of sweeper entries read from a snapshot.
// An entry whose event has changed since (unfinished again, or its id
// used again) no longer matches the event's state and goes alone.
func applySweep(txn *badger.Txn, keys [][]byte) error {
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
		exp, id, ok := parseExpiryKey(k)
		if !ok {
			continue
		}
		st, has, err := txnState(txn, id)
		if err != nil {
			return err
		}
		if !has || st.expires != exp {
			continue
		}
		if err := forgetEvent(txn, id, &st); err != nil {
			return err
		}
	}
	return nil
}
