package persist

import "time"

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
			if err := s.db.RunValueLogGC(0.5); err != nil {
				break
			}
		}
	}
}
