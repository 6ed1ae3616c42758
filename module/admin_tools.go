package module

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

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
