package persist

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Key layout: a prefix byte and a separator, then big-endian fields, so
// prefix scans come out in order. Route names are length-prefixed so that
// one route's range never contains another's.
const (
	pEvent    = 'e' // e|eventID                       -> event record
	pDelivery = 'd' // d|deliveryID                    -> delivery record
	pReady    = 'q' // q|len route due_ns deliveryID  -> empty
	pAttempt  = 'a' // a|deliveryID 0 n               -> attempt record (not for a final first attempt: the d| record holds it)
	pDead     = 'x' // x|len route time_ns deliveryID -> empty
	pDone     = 'v' // v|len route time_ns deliveryID -> empty (delivered)
	pDedupe   = 'i' // i|key                          -> 1 expiry_ns eventID (TTL)
	pOrder    = 'o' // o|len route len16 key deliveryID -> 'a' (in the ready index) or 'w' (waiting)
	pRouteSt  = 'r' // r|route                        -> route state record
	pReceived = 't' // t|received_ns eventID          -> empty, deleted or expired with the event
	pEvState  = 'c' // c|eventID                      -> event state (evstate.go)
	pExpiry   = 'k' // k|expires_s eventID            -> empty: the event is swept then
)

func simpleKey(p byte, id string) []byte {
	k := make([]byte, 0, 2+len(id))
	return append(append(k, p, '|'), id...)
}

func eventKey(id string) []byte    { return simpleKey(pEvent, id) }
func deliveryKey(id string) []byte { return simpleKey(pDelivery, id) }
func dedupeKey(k string) []byte    { return simpleKey(pDedupe, k) }
func stateKey(id string) []byte    { return simpleKey(pEvState, id) }

// expiryKey is the sweeper's entry for an event whose deliveries are all
// final: k|expires eventID, expires in unix seconds by the wall clock.
func expiryKey(expires int64, id string) []byte {
	k := make([]byte, 0, 2+8+len(id))
	k = append(k, pExpiry, '|')
	k = binary.BigEndian.AppendUint64(k, uint64(max(expires, 0)))
	return append(k, id...)
}

// parseExpiryKey splits a k| key into the expiry and the event id.
func parseExpiryKey(k []byte) (int64, string, bool) {
	if len(k) < 2+8 || k[0] != pExpiry || k[1] != '|' {
		return 0, "", false
	}
	return int64(binary.BigEndian.Uint64(k[2:10])), string(k[10:]), true
}

// maxRouteLen is the longest route name the one-byte length prefix can
// hold; Ingest, Record and Due refuse longer ones rather than let the
// length wrap and one route's range run into another's.
const maxRouteLen = 255

func checkRoute(route string) error {
	if len(route) > maxRouteLen {
		return fmt.Errorf("route name of %d bytes is longer than the %d the outbox allows", len(route), maxRouteLen)
	}
	return nil
}

// routePrefix is p|len(route)route.
func routePrefix(p byte, route string) []byte {
	k := make([]byte, 0, 3+len(route)+8+32)
	k = append(k, p, '|', byte(len(route)))
	return append(k, route...)
}

func timedKey(p byte, route string, t time.Time, id string) []byte {
	k := routePrefix(p, route)
	// Times before 1970 (the zero time among them) have negative
	// nanoseconds, which as uint64 would sort after every real time and
	// hide behind future entries: they are all simply due, so store 0.
	ns := t.UnixNano()
	if t.Before(time.Unix(0, 0)) {
		ns = 0
	}
	k = binary.BigEndian.AppendUint64(k, uint64(ns))
	return append(k, id...)
}

func readyKey(route string, due time.Time, id string) []byte {
	return timedKey(pReady, route, due, id)
}

func deadKey(route string, at time.Time, id string) []byte {
	return timedKey(pDead, route, at, id)
}

func doneKey(route string, at time.Time, id string) []byte {
	return timedKey(pDone, route, at, id)
}

// parseTimedKey splits a q|, x| or v| key into route, time and delivery id.
func parseTimedKey(k []byte) (route string, t time.Time, id string, ok bool) {
	if len(k) < 3 {
		return "", time.Time{}, "", false
	}
	n := int(k[2])
	if len(k) < 3+n+8 {
		return "", time.Time{}, "", false
	}
	route = string(k[3 : 3+n])
	t = time.Unix(0, int64(binary.BigEndian.Uint64(k[3+n:3+n+8])))
	return route, t, string(k[3+n+8:]), true
}

func attemptPrefix(deliveryID string) []byte {
	k := make([]byte, 0, 2+len(deliveryID)+1+4)
	k = append(k, pAttempt, '|')
	k = append(k, deliveryID...)
	return append(k, 0)
}

func attemptKey(deliveryID string, n int) []byte {
	return binary.BigEndian.AppendUint32(attemptPrefix(deliveryID), uint32(n))
}

// receivedKey is the event time index entry: t|received_ns eventID.
func receivedKey(received time.Time, id string) []byte {
	k := make([]byte, 0, 2+8+len(id))
	k = append(k, pReceived, '|')
	ns := received.UnixNano()
	if received.Before(time.Unix(0, 0)) {
		ns = 0
	}
	k = binary.BigEndian.AppendUint64(k, uint64(ns))
	return append(k, id...)
}

// parseReceivedKey splits a t| key into the received time and event id.
func parseReceivedKey(k []byte) (time.Time, string, bool) {
	if len(k) < 2+8 || k[0] != pReceived || k[1] != '|' {
		return time.Time{}, "", false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[2:10]))), string(k[10:]), true
}
