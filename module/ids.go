package module

import (
	"encoding/base32"
	"encoding/binary"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// ValidID reports whether s is a valid event id: 1–128 characters of
// A-Z a-z 0-9 _ - : (no `.`: the id is part of the signed
// "id.timestamp.body" content).
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idChar(s[i]) {
			return false
		}
	}
	return true
}

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == ':'
}

// idEncoding is Crockford's base32 alphabet in lower case: it sorts like
// the bytes it encodes, so ids sort by time.
var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// newID returns prefix + 26 characters: 8 bytes of Unix nanoseconds and
// 8 random bytes, so ids are unique and ordered by creation time. The
// nanoseconds never repeat or go back within the process (a batch gets
// one now for all its events), so ids made one after the other sort in
// that order: ordered routes rely on it for ingest order.
func newID(prefix string, now time.Time) string {
	ns := uint64(now.UnixNano())
	for {
		last := lastIDNanos.Load()
		if ns <= last {
			ns = last + 1
		}
		if lastIDNanos.CompareAndSwap(last, ns) {
			break
		}
	}
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], ns)
	binary.BigEndian.PutUint64(raw[8:], rand.Uint64())
	// Short enough to stay on the stack: the string is the one allocation.
	buf := make([]byte, len(prefix)+idEncoding.EncodedLen(16))
	copy(buf, prefix)
	idEncoding.Encode(buf[len(prefix):], raw[:])
	return string(buf)
}

// lastIDNanos is the time part of the last id made.
var lastIDNanos atomic.Uint64
