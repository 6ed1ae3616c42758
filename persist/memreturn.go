package persist

import (
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Returning memory after a burst of writes.
//
// Badger builds its tables in buffers it pools in the Go heap (up to 8,
// 12 MiB each with a large backlog, kept until it has been idle for a
// while), and the Go runtime keeps the heap it has grown to (up to twice
// the live heap) until it collects again, which a process at rest does
// only every two minutes, and even then it keeps that much mapped. After
// a million events were ingested, Caddy held about 310 MiB of anonymous
// memory at rest, of which about 150 MiB was live.
//
// So once the outbox has had no commit for returnAfter, and the heap has
// grown by returnGrowth since the last return, it asks the runtime for a
// collection and to give the freed memory back to the OS
// (debug.FreeOSMemory), and once more after returnAgain of quiet, by
// when Badger has let its pooled buffers go. That is at most two forced
// collections per burst of writes followed by rest, and none while
// writes go on (the runtime collects as usual then) or after small ones.
// Smaller Badger tables and memtables would keep less (half the memory
// with 4 MiB memtables) but cost 15-35% more CPU per event ingested.
const (
	returnCheck  = 250 * time.Millisecond
	returnAfter  = 500 * time.Millisecond
	returnAgain  = 30 * time.Second
	returnGrowth = 64 << 20
)

// memReturn is the state of returnLoop; tests replace its functions.
type memReturn struct {
	// heap returns the heap memory the runtime holds (not returned to
	// the OS); free returns what it can.
	heap func() uint64
	free func()
	// after and again replace returnAfter and returnAgain.
	after, again time.Duration
}

// returnLoop returns memory to the OS after bursts of writes (see above).
func (s *Badger) returnLoop() {
	defer s.wg.Done()
	mr := s.opts.memReturn
	if mr.heap == nil {
		mr.heap = heapHeld
	}
	if mr.free == nil {
		mr.free = debug.FreeOSMemory
	}
	after, again := returnAfter, returnAgain
	if mr.after > 0 {
		after = mr.after
	}
	if mr.again > 0 {
		again = mr.again
	}
	var (
		commits   = s.sync.commits.Load()
		quietFrom = time.Now()
		base      = mr.heap()
		// returned: 0 none since the last write, 1 once, 2 twice.
		returned = 0
	)
	s.every(returnCheck, func() bool {
		now := time.Now()
		if c := s.sync.commits.Load(); c != commits {
			commits, quietFrom, returned = c, now, 0
			return true
		}
		quiet := now.Sub(quietFrom)
		switch {
		case returned == 0 && quiet >= after && mr.heap() >= base+returnGrowth,
			returned == 1 && quiet >= again:
			mr.free()
			base = mr.heap()
			returned++
		}
		return true
	})
}

// heapSamples are the runtime's figures heapHeld adds up.
var heapSamples = []string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
}

// heapHeld is the heap memory the runtime holds, live or not, without
// what it has returned to the OS.
func heapHeld() uint64 {
	ms := make([]metrics.Sample, len(heapSamples))
	for i, name := range heapSamples {
		ms[i].Name = name
	}
	metrics.Read(ms)
	var n uint64
	for _, m := range ms {
		if m.Value.Kind() == metrics.KindUint64 {
			n += m.Value.Uint64()
		}
	}
	return n
}
