package persist

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
)

// Every record starts with a format version byte, so a later release can
// read what this one wrote.
const recordV1 = 1

// Events are stored as version, uvarint length of the JSON metadata, the
// metadata, then the payload bytes as sent: the payload is never
// re-encoded.
func encodeEvent(e *Event) ([]byte, error) {
	meta, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen32+len(meta)+len(e.Data))
	b = append(b, recordV1)
	b = binary.AppendUvarint(b, uint64(len(meta)))
	b = append(b, meta...)
	return append(b, e.Data...), nil
}

func decodeEvent(b []byte) (*Event, error) {
	if len(b) < 2 || b[0] != recordV1 {
		return nil, fmt.Errorf("event record: unknown format version")
	}
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || uint64(len(b)-1-w) < n {
		return nil, fmt.Errorf("event record: truncated")
	}
	meta := b[1+w : 1+w+int(n)]
	var e Event
	if err := json.Unmarshal(meta, &e); err != nil {
		return nil, fmt.Errorf("event record: %w", err)
	}
	e.Data = append([]byte(nil), b[1+w+int(n):]...)
	return &e, nil
}

func encodeJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte{recordV1}, b...), nil
}

func decodeJSON(b []byte, v any) error {
	if len(b) < 1 || b[0] != recordV1 {
		return fmt.Errorf("record: unknown format version")
	}
	return json.Unmarshal(b[1:], v)
}

// Idempotency keys map to dedupeV1, the key's expiry (unix ns, big
// endian) and the event id. Records written before the expiry was kept
// hold the bare event id (ids never start with a control byte); their
// window ends with their TTL.
const dedupeV1 = 1

func encodeDedupe(eventID string, until time.Time) []byte {
	b := make([]byte, 0, 9+len(eventID))
	b = append(b, dedupeV1)
	b = binary.BigEndian.AppendUint64(b, uint64(until.UnixNano()))
	return append(b, eventID...)
}

// decodeDedupe returns the event id of an idempotency record and, when
// it says, the end of its window; ok is false for a bare id.
func decodeDedupe(v []byte) (eventID string, until time.Time, ok bool) {
	if len(v) >= 9 && v[0] == dedupeV1 {
		return string(v[9:]), time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))), true
	}
	return string(v), time.Time{}, false
}
