package persist

import "path/filepath"

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
	s.every(trimEvery, func() bool {
		if err := trimMappings(dir); err != nil {
			s.opts.Logger.Warningf("not trimming the outbox's memory maps any more: %v", err)
			return false
		}
		return true
	})
}
