//go:build linux

package persist

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// trimEvery is how often the outbox lets go of the pages of its files
// that Badger's value-log memory maps have touched (see trimMappings).
const trimEvery = 5 * time.Second

// trimMappings asks the kernel to reclaim the pages the process has
// touched in the memory maps of the outbox's value-log files. Badger maps
// every value-log file it writes or reads, and a mapped page stays
// resident for the life of its file: with a million 1 KB events pending,
// 1.1 GB of payloads sat in Caddy's RSS, pinned by the mappings, where a
// container's memory limit counts them and the kernel reclaims them last.
// MADV_PAGEOUT unmaps and frees the clean ones (the syncer keeps them
// clean); a later read (the delivery of a payload) maps the page again,
// from disk if it is gone. Tables (.sst) are left alone: they are a
// fraction of the size, and reclaiming them made every look-up and a
// restart (which reads every table's index) go to the disk: an open
// after a million ingests took 216 ms instead of 26.
//
// It is advice, never destructive: even if Badger unmapped a range
// between the read of /proc/self/maps and the call, and something else
// was mapped there, that memory would at worst be paged out, never lost
// (MADV_DONTNEED would zero it).
func trimMappings(dir string) error {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return err
	}
	prefix := []byte(dir + string(filepath.Separator))
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// start-end perms offset dev inode path
		line := sc.Bytes()
		fields := bytes.Fields(line)
		if len(fields) < 6 {
			continue
		}
		path := fields[5]
		if !bytes.HasPrefix(path, prefix) || !bytes.HasSuffix(path, []byte(".vlog")) {
			continue
		}
		start, end, ok := bytes.Cut(fields[0], []byte{'-'})
		if !ok {
			continue
		}
		lo, err1 := strconv.ParseUint(string(start), 16, 64)
		hi, err2 := strconv.ParseUint(string(end), 16, 64)
		if err1 != nil || err2 != nil || hi <= lo {
			continue
		}
		_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), unix.MADV_PAGEOUT)
		// ENOMEM: the range was unmapped meanwhile. EINVAL: a kernel
		// before 5.4, without MADV_PAGEOUT.
		if errno != 0 && errno != syscall.ENOMEM {
			return errno
		}
	}
	return sc.Err()
}
