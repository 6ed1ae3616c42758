package module

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/hookgate/hookgate/module/rules"
	"github.com/hookgate/hookgate/persist"
)

// The operator tools of the admin API: test sends, backfill and the live
// tail.

// maxSendBody bounds the body of POST /webhooks/routes/{name}/send.
const maxSendBody = 1 << 20

// sendRequest is the optional body of a test send.
type sendRequest struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// POST /webhooks/routes/{name}/send
func (a *adminAPI) send(eng *Engine, w http.ResponseWriter, r *http.Request, parts []string) *apiError {
	route := parts[1]
	var req sendRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSendBody+1))
	if err != nil {
		return apiErrorf(http.StatusBadRequest, "bad_request", "reading the body: %v", err)
	}
	if len(body) > maxSendBody {
		return apiErrorf(http.StatusRequestEntityTooLarge, "too_large", "the body is over %d bytes", maxSendBody)
	}
	if len(body) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return apiErrorf(http.StatusBadRequest, "bad_request", `body: %v: expected {"type": "...", "data": {...}}, both optional`, err)
		}
		if len(req.Data) > 0 && string(req.Data) == "null" {
			req.Data = nil
		}
	}
	if req.Type != "" && !rules.ValidType(req.Type) {
		// Ingest would refuse it: a test with it would test nothing real.
		return apiErrorf(http.StatusBadRequest, "bad_request", "type %q: expected 1-200 characters of A-Z a-z 0-9 . _ - : /", req.Type)
	}
	ev := &persist.Event{Type: req.Type, Data: req.Data}
	res, err := eng.Send(r.Context(), route, ev)
	switch {
	case errors.Is(err, ErrUnknownRoute):
		return apiErrorf(http.StatusNotFound, "unknown_route", "no route %q in the current config", route)
	case errors.Is(err, ErrNotRunning):
		return apiErrorf(http.StatusServiceUnavailable, "not_running", "the webhooks app is not running; try again in a moment")
	case err != nil:
		return apiErrorf(http.StatusServiceUnavailable, "cancelled", "the test send did not run: %v", err)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// POST /webhooks/routes/{name}/backfill?since=&until=&dry_run=&redeliver=
func (a *adminAPI) backfill(eng *Engine, w http.ResponseWriter, r *http.Request, parts []string) *apiError {
	route := parts[1]
	q := r.URL.Query()
	now := eng.Now()
	var opt BackfillOptions
	if q.Get("since") == "" {
		return apiErrorf(http.StatusBadRequest, "bad_request", "since is required: an RFC 3339 time or a duration before now (2h, 2d)")
	}
	var err error
	if opt.Since, err = ParseSince(q.Get("since"), now); err != nil {
		return apiErrorf(http.StatusBadRequest, "bad_request", "since: %v", err)
	}
	if opt.Until, err = ParseSince(q.Get("until"), now); err != nil {
		return apiErrorf(http.StatusBadRequest, "bad_request", "until: %v", err)
	}
	for name, p := range map[string]*bool{"dry_run": &opt.DryRun, "redeliver": &opt.Redeliver} {
		if s := q.Get(name); s != "" {
			if *p, err = strconv.ParseBool(s); err != nil {
				return apiErrorf(http.StatusBadRequest, "bad_request", "%s %q: expected true or false", name, s)
			}
		}
	}
	res, err := eng.Backfill(r.Context(), route, opt)
	switch {
	case errors.Is(err, ErrUnknownRoute):
		return apiErrorf(http.StatusNotFound, "unknown_route", "no route %q in the current config", route)
	case errors.Is(err, ErrBadWindow):
		return apiErrorf(http.StatusBadRequest, "bad_request", "since %s, until %s: %v", opt.Since.UTC().Format(time.RFC3339), fmtTime(opt.Until), err)
	case errors.Is(err, ErrOverloaded):
		return apiErrorf(http.StatusServiceUnavailable, "overloaded",
			"stopped after queueing %d deliveries: max_pending would be exceeded; run it again once the route has caught up (it skips what is queued)", res.Queued)
	case errors.Is(err, ErrNotRunning):
		return apiErrorf(http.StatusServiceUnavailable, "not_running", "the webhooks app is not running; try again in a moment")
	case err != nil:
		return storeError(err, fmt.Sprintf("backfilling (after %d queued)", res.Queued))
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
