package module

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// GET /webhooks/tail: outcomes as they happen, as Server-Sent Events.

// tailHeartbeat is how often an idle tail writes a comment line, so
// proxies and clients see the stream is alive; tests shorten it.
var tailHeartbeat = 15 * time.Second

// tailBuffer is how many outcomes a tail holds for a slow client before
// it drops them (and says how many).
const tailBuffer = 1024

// tailStatuses are the Outcome statuses a tail may filter on.
var tailStatuses = map[string]bool{"delivered": true, "retry": true, "dead": true}

// GET /webhooks/tail?route=&status=
//
// Each outcome is one `data: <Outcome JSON>` event. When the client
// fell behind and outcomes were dropped, an `event: dropped` with
// `data: {"dropped": N}` (the total so far) comes before the next one.
// The stream ends when the client goes away, or when Caddy stops.
func (a *adminAPI) tail(eng *Engine, w http.ResponseWriter, r *http.Request, _ []string) *apiError {
	q := r.URL.Query()
	route, status := q.Get("route"), q.Get("status")
	if status != "" && !tailStatuses[status] {
		return apiErrorf(http.StatusBadRequest, "bad_request", "status %q: expected delivered, retry or dead", status)
	}
	if route != "" && !eng.KnownRoute(route) {
		return apiErrorf(http.StatusNotFound, "unknown_route", "no route %q in the config or the outbox", route)
	}
	rc := http.NewResponseController(w)
	outcomes, dropped, cancel := eng.Subscribe(tailBuffer)
	defer cancel()
	// Across a reload the stream goes on; when Caddy stops it ends, or
	// the admin server would wait for it (10 s) and stop unclean.
	unconfigured := eng.Unconfigured()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, ": hookgate outcomes\n\n"); err != nil {
		return nil
	}
	if err := rc.Flush(); err != nil {
		return nil
	}
	beat := time.NewTicker(tailHeartbeat)
	defer beat.Stop()
	var reported int64
	for {
		var err error
		select {
		case <-r.Context().Done():
			return nil
		case <-unconfigured:
			return nil
		case <-beat.C:
			_, err = fmt.Fprint(w, ": heartbeat\n\n")
		case o, ok := <-outcomes:
			if !ok {
				return nil
			}
			if n := dropped(); n != reported {
				reported = n
				if _, err = fmt.Fprintf(w, "event: dropped\ndata: {\"dropped\":%d}\n\n", n); err != nil {
					return nil
				}
			}
			if (route != "" && o.Route != route) || (status != "" && o.Status != status) {
				continue
			}
			b, _ := json.Marshal(o)
			_, err = fmt.Fprintf(w, "data: %s\n\n", b)
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return nil
		}
	}
}
