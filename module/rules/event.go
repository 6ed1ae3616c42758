// Package rules holds what a route decides with: topic patterns over
// event types, CEL rules (`when`), transforms and order keys, and the
// url/header templates filled from an event. Everything is compiled once,
// when the config loads, and is safe for concurrent use afterwards.
//
// The package is a leaf: it knows events (persist.Event) and Caddy's
// global placeholders (caddy.Replacer), and nothing of the app that uses
// it.
package rules

import (
	"encoding/json"
	"sync"

	"cel.dev/cel-go/cel"

	"github.com/hookgate/hookgate/persist"
)

// Event is an event as rules, transforms, order keys and templates see
// it. Its data is parsed from JSON on first use, once, and shared by
// everything evaluated on the same Event, so a route after the first
// costs no further parse. An Event is not safe for concurrent use: make
// one per goroutine (NewEvent is cheap).
type Event struct {
	ev     *persist.Event
	parsed bool
	data   any
	err    error
	vars   map[string]any
}

// NewEvent wraps ev. Nothing is parsed until a rule or template needs the
// data.
func NewEvent(ev *persist.Event) *Event { return &Event{ev: ev} }

// ID is the wrapped event's id, for log lines.
func (e *Event) ID() string { return e.ev.ID }

// value parses the event's data on first use. Raw bytes that are not
// UTF-8 (an inbound body kept as data_base64) are CEL bytes.
func (e *Event) value() (any, error) {
	if !e.parsed {
		e.parsed = true
		if e.ev.DataBase64 {
			e.data = e.ev.Data
		} else {
			e.err = json.Unmarshal(e.ev.Data, &e.data)
		}
	}
	return e.data, e.err
}

// activation is the CEL variables: one map `event` with id, type,
// source, time, data and headers.
func (e *Event) activation() (map[string]any, error) {
	if e.vars != nil {
		return e.vars, nil
	}
	data, err := e.value()
	if err != nil {
		return nil, err
	}
	headers := e.ev.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	e.vars = map[string]any{"event": map[string]any{
		"id":      e.ev.ID,
		"type":    e.ev.Type,
		"source":  e.ev.Source,
		"time":    e.ev.Time,
		"data":    data,
		"headers": headers,
	}}
	return e.vars, nil
}

// celEnv is the one CEL environment rules, transforms and order keys
// compile in: a single variable `event` with id, type, source, time, data
// and headers.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(cel.Variable("event", cel.MapType(cel.StringType, cel.DynType)))
})
