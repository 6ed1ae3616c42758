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
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"

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
		} else if err := json.Unmarshal(e.ev.Data, &e.data); err != nil {
			e.err = dataError(err)
		}
	}
	return e.data, e.err
}

// dataError says why stored data could not be parsed. Ingest takes only
// valid JSON, so it is a number no double can hold (1E400): JSON allows
// it, rules and placeholders read numbers as doubles.
func dataError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && strings.HasPrefix(te.Value, "number") {
		return fmt.Errorf("event data cannot be read: it holds the %s, beyond what a double can hold", te.Value)
	}
	return fmt.Errorf("event data cannot be read: %v", err)
}

// activation is the CEL variables: `event`, with id, type, source,
// time, data and headers.
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
	e.vars = map[string]any{"event": &celEvent{
		ID:      e.ev.ID,
		Type:    e.ev.Type,
		Source:  e.ev.Source,
		Time:    e.ev.Time,
		Data:    data,
		Headers: headers,
	}}
	return e.vars, nil
}

// celEvent is the variable `event` as CEL sees it: a typed object, so
// that a misspelt field (`event.dta`) or a comparison of the wrong types
// (`event.type == 1`) is an error when the config loads, not a rule that
// silently never matches. Only data, parsed from JSON, is dynamic.
type celEvent struct {
	ID      string            `cel:"id"`
	Type    string            `cel:"type"`
	Source  string            `cel:"source"`
	Time    time.Time         `cel:"time"`
	Data    any               `cel:"data"`
	Headers map[string]string `cel:"headers"`
}

// celEventType is the CEL type name of `event`.
const celEventType = "rules.celEvent"

// celEnv is the one CEL environment rules, transforms and order keys
// compile in.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[celEvent](), ext.ParseStructTags(true)),
		cel.Variable("event", cel.ObjectType(celEventType)),
	)
})
