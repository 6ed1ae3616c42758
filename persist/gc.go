package persist

import (
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
		if free := s.space.space().Free; free >= 0 && free < valueLogFileSize {
			continue
		}
		for i := 0; i < 16; i++ {
			if err := s.runValueLogGC(0.5); err != nil {
				break
			}
		}
	}
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
