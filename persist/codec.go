package persist

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
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
