package persist

import (
	"path/filepath"
	"time"
)

// trimLoop runs trimMappings every trimEvery until the store closes; it
// gives up (once, with a log line) if the kernel refuses.
func (s *Badger) trimLoop() {
	defer s.wg.Done()
	dir, err := filepath.Abs(s.opts.Dir)
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		s.opts.Logger.Warningf("not trimming the outbox's memory maps: %v", err)
		return
	}
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if err := trimMappings(dir); err != nil {
			s.opts.Logger.Warningf("not trimming the outbox's memory maps any more: %v", err)
			return
		}
	}
}
