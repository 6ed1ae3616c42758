package caddyfile

import (
	"encoding/json"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/hookgate/hookgate/module"
)

// parseSampleEvent parses `sample_event <type> [<data>]`: the event
// `caddy webhooks send` uses for the route when given none. data is one
// JSON value, usually backtick-quoted:
//
//	sample_event task.finished `{"task_id": "T-1", "priority": "High"}`
func parseSampleEvent(d *caddyfile.Dispenser, r *module.Route) error {
	if err := once(d, r.SampleEvent != nil); err != nil {
		return err
	}
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return argCount(d, "sample_event", "an event type and optionally its data as JSON", len(args))
	}
	if err := noBlock(d, "sample_event"); err != nil {
		return err
	}
	s := &module.SampleEvent{Type: args[0]}
	if len(args) == 2 {
		s.Data = json.RawMessage(args[1])
	}
	if err := s.Validate(); err != nil {
		return d.Errf("%v (quote the data with backticks: `{\"key\": \"value\"}`)", err)
	}
	r.SampleEvent = s
	return nil
}
