package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/hookgate/hookgate/module"
)

// Live updates: GET /live?route=&status=&event= is a Server-Sent Events
// stream of attempt outcomes (event "outcome", data an Outcome as JSON)
// from the engine's feed, filtered here. A stream that falls behind
// loses outcomes and is told how many (event "dropped"); the page then
// suggests a reload. Streams end after liveMaxAge (EventSource
// reconnects by itself) and when the config that served them goes, so
// a reload never waits on an open console.

const (
	liveBuffer    = 256
	liveHeartbeat = 15 * time.Second
	liveMaxAge    = 10 * time.Minute
)

// GET /live
func (h *Handler) live(rq *request, _ []string) {
	eng := h.engine(rq)
	if eng == nil {
		return
	}
	q := rq.r.URL.Query()
	route, status, event := q.Get("route"), q.Get("status"), q.Get("event")
	switch status {
	case "", "delivered", "dead", "retry":
	case "pending":
		// The list's "pending" filter: an attempt that failed and will
		// be retried leaves its delivery pending.
		status = "retry"
	default:
		h.errorPage(rq, http.StatusBadRequest, "Bad filter", fmt.Sprintf("Status %q: expected pending, delivered or dead.", status))
		return
	}
	rc := http.NewResponseController(rq.w)
	hd := rq.w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("X-Accel-Buffering", "no")
	rq.w.WriteHeader(http.StatusOK)
	if rq.r.Method == http.MethodHead {
		return
	}
	// The retry hint and a first comment tell EventSource it is open.
	if _, err := fmt.Fprint(rq.w, "retry: 3000\n: live\n\n"); err != nil || rc.Flush() != nil {
		return
	}
	outcomes, dropped, cancel := eng.Subscribe(liveBuffer)
	defer cancel()
	beat := time.NewTicker(liveHeartbeat)
	defer beat.Stop()
	end := time.NewTimer(liveMaxAge)
	defer end.Stop()
	var told int64
	for {
		select {
		case <-rq.r.Context().Done():
			return
		case <-h.done:
			return
		case <-end.C:
			return
		case <-beat.C:
			if _, err := fmt.Fprint(rq.w, ": ping\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case o, ok := <-outcomes:
			if !ok {
				return
			}
			if n := dropped(); n > told {
				if _, err := fmt.Fprintf(rq.w, "event: dropped\ndata: %d\n\n", n-told); err != nil {
					return
				}
				told = n
			}
			if route != "" && o.Route != route || status != "" && o.Status != status || event != "" && o.EventID != event {
				continue
			}
			if err := writeOutcome(rq.w, o); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// writeOutcome writes one outcome event. The feed carries no URL,
// header or body; the error is redacted again all the same.
func writeOutcome(w http.ResponseWriter, o module.Outcome) error {
	o.Error = module.RedactURLs(o.Error)
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: outcome\ndata: %s\n\n", b)
	return err
}
