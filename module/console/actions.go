package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hookgate/hookgate/module"
	"github.com/hookgate/hookgate/persist"
	natsstore "github.com/hookgate/hookgate/persist/nats"
)

// Actions change the gateway, so each must come from a console page the
// user is looking at: a POST whose Origin (or Sec-Fetch-Site, or
// Referer) says it is from this site, carrying a CSRF token that only
// this process could have made for this user. After an action the
// browser is sent back (303) to the page it came from, with a notice.

// csrfKey signs CSRF tokens. It is made once per process: tokens stay
// good across reloads, and pages loaded before a restart need a reload.
var csrfKey = func() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic("webhook console: no randomness for the CSRF key: " + err.Error())
	}
	return k
}()

// csrfToken is the token of the forms shown to user: an HMAC of the
// console's path and the user, so a token taken from one user's page
// is no good for another user.
func (h *Handler) csrfToken(user string) string {
	m := hmac.New(sha256.New, csrfKey)
	m.Write([]byte("hookgate console csrf\x00" + h.prefix + "\x00" + user))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// maxForm bounds an action's form body.
const maxForm = 16 << 10

// checkPost answers 403 and returns false unless the request is a
// same-origin POST with this user's CSRF token.
func (h *Handler) checkPost(rq *request) bool {
	if why := crossOrigin(rq.r); why != "" {
		h.logger.Warn("webhook console refused a cross-origin action",
			zap.String("path", rq.r.URL.Path), zap.String("reason", why),
			zap.String("user", rq.user), zap.String("remote", rq.r.RemoteAddr))
		h.errorPage(rq, http.StatusForbidden, "Refused: not from this console",
			"The action was refused because it did not come from a page of this console ("+why+"). Open the console and use its buttons.")
		return false
	}
	rq.r.Body = http.MaxBytesReader(rq.w, rq.r.Body, maxForm)
	if err := rq.r.ParseForm(); err != nil {
		h.errorPage(rq, http.StatusBadRequest, "Bad form", "The form could not be read: "+err.Error())
		return false
	}
	got := rq.r.PostForm.Get("csrf")
	if got == "" || !hmac.Equal([]byte(got), []byte(h.csrfToken(rq.user))) {
		h.logger.Warn("webhook console refused an action with a missing or stale form token",
			zap.String("path", rq.r.URL.Path), zap.Bool("token_sent", got != ""),
			zap.String("user", rq.user), zap.String("remote", rq.r.RemoteAddr))
		h.errorPage(rq, http.StatusForbidden, "Refused: stale or missing form token",
			"The action was refused because its form token is missing or out of date (Caddy restarted, or you signed in as someone else). Reload the page and try again.")
		return false
	}
	return true
}

// crossOrigin says why r may come from another site, or "" if it comes
// from this one. Browsers send Sec-Fetch-Site and Origin with every
// POST; Referer is the fallback for older ones. A request with none of
// them is refused: the console's own forms always have one.
func crossOrigin(r *http.Request) string {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		if s != "same-origin" {
			return "Sec-Fetch-Site is " + s
		}
		return ""
	}
	if o := r.Header.Get("Origin"); o != "" {
		if u, err := url.Parse(o); o == "null" || err != nil || !strings.EqualFold(u.Host, r.Host) {
			return "Origin " + o + " is not " + r.Host
		}
		return ""
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		if u, err := url.Parse(ref); err != nil || !strings.EqualFold(u.Host, r.Host) {
			return "Referer is not on " + r.Host
		}
		return ""
	}
	return "no Origin or Referer header"
}

// back sends the browser to the page the form named in "return" (a
// console page; anything else means the overview), with a notice.
func (h *Handler) back(rq *request, notice url.Values) {
	ret := rq.r.PostForm.Get("return")
	u, err := url.Parse(ret)
	if ret == "" || err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(ret, "//") ||
		strings.Contains(ret, "\\") || !(u.Path == h.prefix || strings.HasPrefix(u.Path, h.prefix+"/")) {
		u = &url.URL{Path: h.prefix + "/"}
	}
	q := u.Query()
	for _, k := range []string{"notice", "subject", "n", "was"} {
		q.Del(k)
	}
	for k, v := range notice {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	http.Redirect(rq.w, rq.r, u.String(), http.StatusSeeOther)
}

// logAction logs who did what, with the action's own fields.
func (h *Handler) logAction(rq *request, msg string, fields ...zap.Field) {
	user := rq.user
	if user == "" {
		user = "(no authenticated user)"
	}
	h.logger.Info(msg, append(fields, zap.String("user", user), zap.String("remote", rq.r.RemoteAddr))...)
}

// POST /deliveries/{id}/retry
func (h *Handler) retry(rq *request, parts []string) {
	eng := h.engine(rq)
	if eng == nil {
		return
	}
	id := parts[1]
	res, err := eng.Retry(id)
	switch {
	case errors.Is(err, persist.ErrNotFound):
		h.errorPage(rq, http.StatusNotFound, "No such delivery",
			"There is no delivery "+id+": it was never stored, or it expired by retention.")
		return
	case errors.Is(err, module.ErrCannotRequeue):
		h.errorPage(rq, http.StatusConflict, "Cannot retry",
			"Delivery "+id+" cannot be retried: it or its event expired by retention, so there is nothing left to send.")
		return
	case err != nil:
		h.storeError(rq, err)
		return
	}
	h.logAction(rq, "console: delivery retried", zap.String("delivery", id),
		zap.String("route", res.Route), zap.String("was", res.Was.String()))
	q := url.Values{"notice": {"retried"}, "subject": {id}, "was": {res.Was.String()}}
	if held := eng.Held(res.Route); held != "" {
		// "Send now" on a paused route, or behind an open circuit,
		// sends nothing: the notice says so.
		q.Set("held", held)
	}
	h.back(rq, q)
}

// POST /routes/{name}/pause and /resume
func (h *Handler) pause(rq *request, parts []string) {
	eng := h.engine(rq)
	if eng == nil {
		return
	}
	route, paused := parts[1], parts[2] == "pause"
	err := eng.SetPaused(route, paused)
	switch {
	case errors.Is(err, module.ErrUnknownRoute):
		h.errorPage(rq, http.StatusNotFound, "No such route",
			"There is no route "+route+" in the config or the outbox.")
		return
	case err != nil:
		h.storeError(rq, err)
		return
	}
	h.logAction(rq, "console: route "+parts[2]+"d", zap.String("route", route))
	h.back(rq, url.Values{"notice": {parts[2] + "d"}, "subject": {route}})
}

// POST /routes/{name}/replay (form: since, status)
func (h *Handler) replay(rq *request, parts []string) {
	eng := h.engine(rq)
	if eng == nil {
		return
	}
	route := parts[1]
	st := persist.StatusDead
	if s := rq.r.PostForm.Get("status"); s != "" {
		var ok bool
		if st, ok = persist.ParseStatus(s); !ok || st == persist.StatusPending {
			h.errorPage(rq, http.StatusBadRequest, "Bad replay",
				fmt.Sprintf("Status %q: expected dead or delivered (pending deliveries are queued already).", s))
			return
		}
	}
	since, err := module.ParseSince(rq.r.PostForm.Get("since"), eng.Now())
	if err != nil {
		h.errorPage(rq, http.StatusBadRequest, "Bad replay", "Since: "+err.Error())
		return
	}
	if module.ValidRouteName(route) != nil {
		h.errorPage(rq, http.StatusNotFound, "No such route", "There is no route "+route+".")
		return
	}
	n, err := eng.Replay(route, st, since, time.Time{}, 0)
	switch {
	case errors.Is(err, module.ErrUnknownRoute):
		h.errorPage(rq, http.StatusNotFound, "No such route",
			"There is no route "+route+" in the config or the outbox.")
		return
	case err != nil:
		h.logAction(rq, "console: replay failed part way", zap.String("route", route), zap.Int("replayed", n), zap.Error(err))
		h.storeError(rq, err)
		return
	}
	h.logAction(rq, "console: deliveries replayed", zap.String("route", route),
		zap.String("status", st.String()), zap.Time("since", since), zap.Int("replayed", n))
	h.back(rq, url.Values{"notice": {"replayed"}, "subject": {route}, "n": {strconv.Itoa(n)}, "was": {st.String()}})
}

// storeError answers an outbox failure.
func (h *Handler) storeError(rq *request, err error) {
	switch {
	case errors.Is(err, persist.ErrClosed):
		rq.w.Header().Set("Retry-After", "1")
		h.errorPage(rq, http.StatusServiceUnavailable, "Outbox closed",
			"The outbox is closed (Caddy is stopping or reloading). Try again in a moment.")
	case errors.Is(err, persist.ErrBadCursor):
		h.errorPage(rq, http.StatusBadRequest, "Bad page link",
			"The page link is not valid for this listing (the filter changed, or the link was edited). Start again from the first page.")
	case errors.Is(err, persist.ErrBadFilter):
		h.errorPage(rq, http.StatusBadRequest, "Bad filter", err.Error())
	case natsstore.Unavailable(err):
		// As the admin API answers it. A write that timed out may still
		// be applied once NATS answers again.
		rq.w.Header().Set("Retry-After", "1")
		h.errorPage(rq, http.StatusServiceUnavailable, "Outbox unavailable",
			"NATS cannot answer right now. Try again in a moment; an action that timed out may still take effect once NATS answers.")
	default:
		h.logger.Error("webhook console: reading the outbox", zap.String("path", rq.r.URL.Path), zap.Error(err))
		h.errorPage(rq, http.StatusInternalServerError, "Outbox error",
			"The outbox could not be read; the error is in Caddy's log.")
	}
}
