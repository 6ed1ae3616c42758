package console

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/hookgate/hookgate/module"
)

// sendBound bounds a test send beyond the route's own timeout, so a
// console request never hangs on it.
const sendBound = 2 * time.Minute

// sendData is the page of a test send.
type sendData struct {
	module.SendResult
	// OK is a 2xx answer.
	OK bool
}

// POST /routes/{name}/send: one test event through the route's real
// request path (URL, headers, transform, signing, egress), answered with
// what the endpoint said. Nothing is stored or retried.
func (h *Handler) send(rq *request, parts []string) {
	eng := h.engine(rq)
	if eng == nil {
		return
	}
	route := parts[1]
	ctx, cancel := context.WithTimeout(rq.r.Context(), sendBound)
	defer cancel()
	res, err := eng.Send(ctx, route, nil)
	switch {
	case errors.Is(err, module.ErrUnknownRoute):
		h.errorPage(rq, http.StatusNotFound, "No such route",
			"There is no route "+route+" in the current config: only a configured route can be sent a test event.")
		return
	case errors.Is(err, module.ErrNotRunning):
		rq.w.Header().Set("Retry-After", "1")
		h.errorPage(rq, http.StatusServiceUnavailable, "The gateway is not running", "Try again in a moment.")
		return
	case err != nil:
		h.errorPage(rq, http.StatusGatewayTimeout, "Test event not sent", "The test event was not sent: "+module.RedactURLs(err.Error())+".")
		return
	}
	h.logAction(rq, "console: test event sent", zap.String("route", route), zap.String("event", res.EventID),
		zap.Int("status", res.Status), zap.String("class", res.Class))
	h.render(rq, http.StatusOK, "send", "Test event to "+route, "overview", eng.Now(),
		sendData{SendResult: res, OK: res.Class == "" && res.Status >= 200 && res.Status < 300})
}
