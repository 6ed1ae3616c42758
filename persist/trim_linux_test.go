//go:build linux

package persist

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mappedRSS is the resident memory, in KiB, of the process's mappings of
// files under dir ending in ext.
func mappedRSS(t *testing.T, dir, ext string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("SKIPPED, NOT TESTED: no /proc/self/smaps: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	in, kb := false, 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = len(f) >= 6 && strings.HasPrefix(f[5], dir+"/") && strings.HasSuffix(f[5], ext)
			continue
		}
		if in && len(f) >= 2 && f[0] == "Rss:" {
			var n int
			fmt.Sscan(f[1], &n)
			kb += n
		}
	}
	return kb
}

func TestTrimMappingsReleasesValueLogPages(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, Options{Dir: dir, vlogFileSize: 4 << 20})
	payload := `"` + strings.Repeat("x", 4000) + `"`
	for i := 0; i < 40; i++ {
		var batch []Ingest
		for j := 0; j < 100; j++ {
			in := oneIngest(fmt.Sprintf("ev%02d-%03d", i, j), t0, "r")
			in.Event.Data = []byte(payload)
			batch = append(batch, in)
		}
		ingest(t, s, batch...)
	}
	// Read them back: reads touch the mapped pages too.
	for i := 0; i < 40; i++ {
		if _, err := s.Event(fmt.Sprintf("ev%02d-%03d", i, 7)); err != nil {
			t.Fatal(err)
		}
	}
	before := mappedRSS(t, dir, ".vlog")
	if before < 8<<10 {
		t.Fatalf("only %d KiB of the ~16 MB value log resident before trimming: the test measures nothing", before)
	}
	if err := s.durable(); err != nil { // clean pages are the ones reclaimed
		t.Fatal(err)
	}
	if err := trimMappings(dir); err != nil {
		t.Skipf("SKIPPED, NOT TESTED: the kernel refused MADV_PAGEOUT: %v", err)
	}
	after := mappedRSS(t, dir, ".vlog")
	if after > before/4 {
		t.Fatalf("value-log pages resident: %d KiB before trimming, %d KiB after", before, after)
	}
	// Nothing is lost: every event reads back whole.
	for i := 0; i < 40; i++ {
		ev, err := s.Event(fmt.Sprintf("ev%02d-%03d", i, 99))
		if err != nil {
			t.Fatalf("event after trimming: %v", err)
		}
		if string(ev.Data) != payload {
			t.Fatalf("event after trimming has %d bytes of data, want the %d written", len(ev.Data), len(payload))
		}
	}
}
