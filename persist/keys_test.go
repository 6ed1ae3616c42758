package persist

import (
	"bytes"
	"sort"
	"testing"
	"time"
)

func TestTimedKeyRoundTrip(t *testing.T) {
	cases := []struct {
		route string
		at    time.Time
		id    string
	}{
		{"a", t0, "d1"},
		{"", t0.Add(time.Nanosecond), "x"},
		{"route with spaces/é", time.Unix(0, 1), "id|with|bars"},
		{string(bytes.Repeat([]byte("r"), 255)), t0, "d"},
	}
	for _, tc := range cases {
		for _, p := range []byte{pReady, pDead} {
			k := timedKey(p, tc.route, tc.at, tc.id)
			if k[0] != p || k[1] != '|' {
				t.Fatalf("key %q: wrong prefix", k)
			}
			route, at, id, ok := parseTimedKey(k)
			if !ok || route != tc.route || !at.Equal(tc.at) || id != tc.id {
				t.Fatalf("parseTimedKey(timedKey(%q, %s, %q)) = %q, %s, %q, %v",
					tc.route, tc.at, tc.id, route, at, id, ok)
			}
		}
	}
	if _, _, _, ok := parseTimedKey([]byte{pReady, '|', 5, 'a'}); ok {
		t.Fatal("parseTimedKey accepted a truncated key")
	}
	if _, _, _, ok := parseTimedKey([]byte{pReady}); ok {
		t.Fatal("parseTimedKey accepted a 1-byte key")
	}
}

// Ready keys of one route sort by due time (then id), and no key of one
// route falls inside another route's prefix range.
func TestReadyKeyOrderAndIsolation(t *testing.T) {
	routes := []string{"a", "ab", "b", "a\x00", ""}
	// Times before 1970 (and the zero time) have negative nanoseconds:
	// they must sort first, not after every real due time.
	times := []time.Time{t0.Add(time.Hour), t0, t0.Add(time.Nanosecond), time.Unix(0, 0), t0.Add(-time.Hour),
		time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), {}}
	ids := []string{"z", "a", "m"}
	for _, r := range routes {
		prefix := routePrefix(pReady, r)
		var keys [][]byte
		for _, at := range times {
			for _, id := range ids {
				keys = append(keys, readyKey(r, at, id))
			}
		}
		sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i], keys[j]) < 0 })
		for i := 1; i < len(keys); i++ {
			_, a1, id1, _ := parseTimedKey(keys[i-1])
			_, a2, id2, _ := parseTimedKey(keys[i])
			if a2.Before(a1) || (a2.Equal(a1) && id2 < id1) {
				t.Fatalf("route %q: %s/%s sorts after %s/%s", r, fmtTime(a1), id1, fmtTime(a2), id2)
			}
		}
		for _, other := range routes {
			if other == r {
				continue
			}
			for _, at := range times {
				if k := readyKey(other, at, "id"); bytes.HasPrefix(k, prefix) {
					t.Fatalf("ready key of route %q falls under route %q's prefix", other, r)
				}
			}
		}
	}
}

func TestAttemptKeys(t *testing.T) {
	// Numeric order, not lexical: 2 before 10.
	if bytes.Compare(attemptKey("d", 2), attemptKey("d", 10)) >= 0 {
		t.Fatal("attempt 2 does not sort before attempt 10")
	}
	if !bytes.HasPrefix(attemptKey("d1", 7), attemptPrefix("d1")) {
		t.Fatal("attempt key outside its delivery's prefix")
	}
	// Delivery "d1" must not see the attempts of "d10".
	if bytes.HasPrefix(attemptKey("d10", 1), attemptPrefix("d1")) {
		t.Fatal(`attempts of "d10" fall under the prefix of "d1"`)
	}
}

func TestSimpleKeys(t *testing.T) {
	for _, tc := range []struct {
		got, want []byte
	}{
		{eventKey("e1"), []byte("e|e1")},
		{deliveryKey("d1"), []byte("d|d1")},
		{dedupeKey("k"), []byte("i|k")},
		{stateKey("e1"), []byte("c|e1")},
	} {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("key %q, want %q", tc.got, tc.want)
		}
	}
}

func TestExpiryKeys(t *testing.T) {
	// In time order across the byte boundaries of the big-endian field,
	// then by id; a seek to (t, "") comes before every entry at t.
	if bytes.Compare(expiryKey(255, "z"), expiryKey(256, "a")) >= 0 ||
		bytes.Compare(expiryKey(256, "a"), expiryKey(256, "b")) >= 0 ||
		bytes.Compare(expiryKey(256, ""), expiryKey(256, "a")) >= 0 {
		t.Fatal("expiry keys out of order")
	}
	exp, id, ok := parseExpiryKey(expiryKey(1893729845, "ev|1"))
	if !ok || exp != 1893729845 || id != "ev|1" {
		t.Fatalf("parsed %d %q %v", exp, id, ok)
	}
	for _, bad := range [][]byte{nil, []byte("k|1234567"), []byte("t|12345678id")} {
		if _, _, ok := parseExpiryKey(bad); ok {
			t.Errorf("parseExpiryKey(%q) accepted", bad)
		}
	}
}
