//go:build !linux

package persist

import "os"

// startWriteback is a no-op where sync_file_range is not available: the
// fsync that follows writes the pages.
func startWriteback(*os.File) {}
