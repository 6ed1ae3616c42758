package persist

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestMemoryReturnedWhenIdle: after writes, once the outbox is quiet,
// memory goes back to the OS if the heap grew by returnGrowth, and once
// more after a longer quiet; never while writes go on, nor after writes
// that did not grow the heap.
func TestMemoryReturnedWhenIdle(t *testing.T) {
	var heap, frees atomic.Uint64
	heap.Store(100 << 20)
	s := openStore(t, Options{memReturn: memReturn{
		heap: func() uint64 { return heap.Load() },
		free: func() { frees.Add(1); heap.Store(100 << 20) },
		// A generous quiet before the first return, so a slow fsync
		// between writes 50 ms apart does not look like one.
		after: time.Second,
		again: 2 * time.Second,
	}})
	// waitFrees waits up to d for n returns in all.
	waitFrees := func(n uint64, d time.Duration) bool {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if frees.Load() >= n {
				return true
			}
		}
		return frees.Load() >= n
	}

	// Writes that do not grow the heap: nothing is returned.
	ingest(t, s, oneIngest("e1", t0, "r"))
	if waitFrees(1, 3*time.Second) {
		t.Fatalf("%d returns after writes that did not grow the heap", frees.Load())
	}

	// Writes going on while the heap grows: nothing until they stop.
	heap.Store(100<<20 + returnGrowth)
	stop := time.Now().Add(1500 * time.Millisecond)
	var last time.Time
	for time.Now().Before(stop) {
		ingest(t, s, oneIngest("w"+time.Now().Format("150405.000000000"), t0, "r"))
		last = time.Now()
		time.Sleep(50 * time.Millisecond)
		if n := frees.Load(); n != 0 {
			t.Fatalf("%d returns while writes went on (every 50 ms)", n)
		}
	}
	// Then quiet: one return soon, one more after the longer quiet.
	if !waitFrees(1, 5*time.Second) {
		t.Fatalf("no return within 5 s of the writes stopping, the heap grown by %d MiB", returnGrowth>>20)
	}
	if d := time.Since(last); d < 900*time.Millisecond {
		t.Errorf("returned %v after the last write, want about 1s or more", d)
	}
	if n := frees.Load(); n != 1 {
		t.Fatalf("%d returns right after the writes stopped, want 1", n)
	}
	if !waitFrees(2, 10*time.Second) {
		t.Fatal("no second return after the longer quiet")
	}
	if waitFrees(3, 3*time.Second) {
		t.Fatalf("%d returns after one rest, want 2", frees.Load())
	}
}
