package module

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"

	"github.com/hookgate/hookgate/module/egress"
	"github.com/hookgate/hookgate/persist"
	natsstore "github.com/hookgate/hookgate/persist/nats"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI is `admin.api.webhooks`: the operator's endpoints under
// Caddy's admin API (SPEC §5). Caddy loads every admin.api module with
// each config, so it is there whether or not the `webhooks` app is
// configured, and answers 503 with a clear message when it is not.
//
//	GET  /webhooks/stats                       per-route state and counters
//	GET  /webhooks/events/{id}                 an event, its deliveries and their attempts
//	GET  /webhooks/deliveries?route=&status=&type=&since=&until=&limit=&cursor=
//	POST /webhooks/deliveries/{id}/retry       requeue one delivery now
//	POST /webhooks/routes/{name}/replay?status=dead&since=&until=&limit=
//	POST /webhooks/routes/{name}/pause, /resume
//	POST /webhooks/routes/{name}/send          one test event through the route
//	POST /webhooks/routes/{name}/backfill?since=&until=&dry_run=&redeliver=
//	GET  /webhooks/tail?route=&status=         outcomes as Server-Sent Events
//	GET  /webhooks/openapi.json                the OpenAPI 3.1 description
//
// The router's table is adminEndpoints (admin_routes.go); a test holds
// it and openapi.json to each other.
//
// It shows what the outbox holds about deliveries and attempts, never a
// route's URL, headers or signing secrets; URLs in transport errors are
// cut down to their scheme and host.
type adminAPI struct {
	// app is the webhooks app of the config this admin server belongs
	// to (Caddy provisions admin routers with every config load); nil
	// when that config names none.
	app *App
	// config identifies that config (its context's Done channel, which
	// the contexts derived from it share): an app no JSON names, loaded
	// by a webhook_ingest or webhook_console handler after the admin
	// server was built, is found under it in appsByConfig.
	config <-chan struct{}
}

// apiHeader is on every answer of the admin API, with hookgate's version.
const apiHeader = "Hookgate-Version"

// appsByConfig maps a config (its context's Done channel) to its
// webhooks app, from the app's Provision to its Cleanup.
var appsByConfig sync.Map

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.webhooks",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Provision finds the config's webhooks app, if it has one. Caddy builds
// the admin server before it provisions the apps, so this provisions the
// app early (as the PKI app's admin API does); the config load provisions
// it only once either way.
func (a *adminAPI) Provision(ctx caddy.Context) error {
	a.config = ctx.Done()
	app, err := ctx.AppIfConfigured("webhooks")
	if err != nil {
		// Not configured: the endpoints say so. Failed to provision: the
		// config load fails with that error anyway.
		return nil
	}
	a.app, _ = app.(*App)
	return nil
}

// Routes returns the admin routes.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: adminPrefix, Handler: caddy.AdminHandlerFunc(a.serve)}}
}

const adminPrefix = "/webhooks/"

// Admin API limits.
const (
	// adminResponseKeep is how much of an attempt's response the event
	// look-up shows (the outbox keeps no more than this either).
	adminResponseKeep = 4 << 10
)

// apiError is an admin API failure, answered as
// {"error": code, "message": message}.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func apiErrorf(status int, code, format string, a ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, a...)}
}

// serve routes a request under /webhooks/. It always answers itself, so
// Caddy's own error format (which has no code) is never used.
func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	// Says who answers: the CLI refuses an answer without it (an
	// --address that names another server).
	w.Header().Set(apiHeader, Version)
	if err := a.route(w, r); err != nil {
		writeAPIError(w, err)
	}
	return nil
}

func (a *adminAPI) route(w http.ResponseWriter, r *http.Request) *apiError {
	rest := strings.TrimPrefix(r.URL.Path, adminPrefix)
	parts := strings.Split(rest, "/")
	var allow []string
	for _, ep := range adminEndpoints {
		if !ep.match(parts) {
			continue
		}
		if r.Method != ep.method {
			allow = append(allow, ep.method)
			continue
		}
		if ep.static != nil {
			ep.static(w, r)
			return nil
		}
		eng, err := a.engine(r)
		if err != nil {
			return err
		}
		return ep.handle(a, eng, w, r, parts)
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return apiErrorf(http.StatusMethodNotAllowed, "method_not_allowed", "use %s for %s", strings.Join(allow, " or "), r.URL.Path)
	}
	return apiErrorf(http.StatusNotFound, "not_found",
		"no webhooks admin endpoint at %s: see GET /webhooks/openapi.json for the list", r.URL.Path)
}

// engine returns the running engine of this config's webhooks app.
func (a *adminAPI) engine(r *http.Request) (*Engine, *apiError) {
	app := a.app
	if app == nil && a.config != nil {
		if v, ok := appsByConfig.Load(a.config); ok {
			app = v.(*App)
		}
	}
	if app == nil {
		return nil, apiErrorf(http.StatusServiceUnavailable, "not_configured",
			"the webhooks app is not configured: add a webhooks block to the Caddyfile's global options (apps.webhooks in JSON)")
	}
	eng := app.Engine(r.Context())
	if eng == nil {
		return nil, apiErrorf(http.StatusServiceUnavailable, "not_running",
			"the webhooks app is configured but has not started; try again in a moment")
	}
	return eng, nil
}

// storeError maps an outbox error to an answer.
func storeError(err error, what string) *apiError {
	switch {
	case errors.Is(err, persist.ErrClosed):
		return apiErrorf(http.StatusServiceUnavailable, "unavailable", "the outbox is closed (Caddy is stopping or reloading); try again")
	case errors.Is(err, persist.ErrBadCursor):
		return apiErrorf(http.StatusBadRequest, "bad_cursor", "cursor: %v: pass the next value of the previous page unchanged, with the same filter", err)
	case errors.Is(err, persist.ErrBadFilter):
		return apiErrorf(http.StatusBadRequest, "bad_request", "%v", err)
	case natsstore.Unavailable(err):
		return apiErrorf(http.StatusServiceUnavailable, "unavailable", "%s: NATS cannot answer right now (%v); try again", what, err)
	}
	return apiErrorf(http.StatusInternalServerError, "internal", "%s: %v", what, err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// Data as sent: "<" stays "<", not "\u003c" (nothing here is HTML).
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	if e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.status, apiErrorBody{Error: e.code, Message: e.message})
}

// Answers. The CLI decodes the same types.

type apiErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

type statsAnswer struct {
	Routes []RouteStats `json:"routes"`
	// Outbox says when the outbox refuses work (a full disk, NATS out of
	// reach): routes may look well while applications get 503.
	Outbox *OutboxHealth `json:"outbox,omitempty"`
}

type eventAnswer struct {
	Event      EventView      `json:"event"`
	Deliveries []DeliveryView `json:"deliveries"`
}

type listAnswer struct {
	Deliveries []DeliveryView `json:"deliveries"`
	Next       string         `json:"next,omitempty"`
}

type retryAnswer struct {
	Delivery string `json:"delivery"`
	Route    string `json:"route"`
	// Was is the status before the retry.
	Was string `json:"was"`
	// Held says why the route sends nothing now (paused, disabled,
	// unverified, removed, circuit_open): the delivery waits for it.
	Held string `json:"held,omitempty"`
}

type replayAnswer struct {
	Route    string `json:"route"`
	Replayed int    `json:"replayed"`
}

type pauseAnswer struct {
	Route  string `json:"route"`
	Paused bool   `json:"paused"`
}

// EventView is an event as operators see it (the admin API's event
// look-up, the console): header values that carry credentials are left
// out, and a body that is not UTF-8 is base64-encoded.
type EventView struct {
	ID       string    `json:"id"`
	Type     string    `json:"type"`
	Source   string    `json:"source,omitempty"`
	Time     time.Time `json:"time"`
	Received time.Time `json:"received"`
	// Data is the payload as sent (a JSON string for an inbound body
	// that was not JSON; ContentType then says what it was).
	Data json.RawMessage `json:"data,omitempty"`
	// DataBase64 holds an inbound body that is not UTF-8, base64-encoded,
	// in place of Data.
	DataBase64  string            `json:"data_base64,omitempty"`
	ContentType string            `json:"content_type,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Routes      []string          `json:"routes"`
	TraceID     string            `json:"trace_id,omitempty"`
}

// DeliveryView is a delivery as operators see it: URLs in its last
// error are cut down to scheme and host (RedactURLs).
type DeliveryView struct {
	ID      string `json:"id"`
	EventID string `json:"event_id"`
	// EventType is empty for deliveries stored before event types were
	// recorded.
	EventType   string    `json:"event_type,omitempty"`
	Route       string    `json:"route"`
	Status      string    `json:"status"`
	Attempts    int       `json:"attempts"`
	Created     time.Time `json:"created"`
	Due         time.Time `json:"due,omitzero"` // pending only
	Waiting     bool      `json:"waiting,omitempty"`
	OrderKey    string    `json:"order_key,omitempty"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastStatus  int       `json:"last_status,omitempty"`
	LastClass   string    `json:"last_class,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	Done        time.Time `json:"done,omitzero"`
	// History is every attempt kept, oldest first (event look-up only).
	History []AttemptView `json:"history,omitempty"`
}

// AttemptView is one attempt as operators see it: URLs in its error
// cut down to scheme and host, the response as text or base64.
type AttemptView struct {
	N          int       `json:"n"`
	Time       time.Time `json:"time"`
	DurationMS float64   `json:"duration_ms"`
	Status     int       `json:"status,omitempty"`
	Class      string    `json:"class,omitempty"`
	Error      string    `json:"error,omitempty"`
	TraceID    string    `json:"trace_id,omitempty"`
	// Response is the first 4 KiB of the response body: as text when it
	// is UTF-8, else base64 with ResponseEncoding "base64".
	// ResponseTruncated says the body was longer (attempts recorded by
	// releases before this field cannot say so).
	Response          string `json:"response,omitempty"`
	ResponseEncoding  string `json:"response_encoding,omitempty"`
	ResponseTruncated bool   `json:"response_truncated,omitempty"`
}

// ViewEvent returns what operators may see of ev.
func ViewEvent(ev *persist.Event) EventView {
	v := EventView{
		ID:          ev.ID,
		Type:        ev.Type,
		Source:      ev.Source,
		Time:        ev.Time,
		Received:    ev.Received,
		Data:        json.RawMessage(ev.Data),
		ContentType: ev.ContentType,
		Routes:      ev.Routes,
		TraceID:     traceIDOf(ev.TraceParent),
	}
	if ev.DataBase64 {
		v.Data, v.DataBase64 = nil, base64.StdEncoding.EncodeToString(ev.Data)
	} else if !json.Valid(ev.Data) {
		// Never expected (ingest stores JSON), but one bad record must
		// not make the event unreadable.
		v.Data, _ = json.Marshal(string(ev.Data))
	}
	if v.Routes == nil {
		v.Routes = []string{}
	}
	for k, val := range ev.Headers {
		// Ingest drops these already; an older record may hold them.
		if egress.SensitiveHeader(http.CanonicalHeaderKey(k)) {
			continue
		}
		if v.Headers == nil {
			v.Headers = make(map[string]string, len(ev.Headers))
		}
		v.Headers[k] = val
	}
	return v
}

// traceIDOf returns the trace id of a W3C traceparent.
func traceIDOf(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) < 4 || len(parts[1]) != 32 {
		return ""
	}
	return parts[1]
}

// ViewDelivery returns what operators may see of d, without its
// attempts (History is left empty).
func ViewDelivery(d *persist.Delivery) DeliveryView {
	v := DeliveryView{
		ID:          d.ID,
		EventID:     d.EventID,
		EventType:   d.EventType,
		Route:       d.Route,
		Status:      d.Status.String(),
		Attempts:    d.Attempts,
		Created:     d.Created,
		Waiting:     d.Waiting,
		OrderKey:    d.OrderKey,
		LastAttempt: d.LastAttempt,
		LastStatus:  d.LastStatus,
		LastClass:   d.LastClass,
		LastError:   RedactURLs(d.LastError),
		Done:        d.Done,
	}
	if d.Status == persist.StatusPending {
		v.Due = d.Due
	}
	return v
}

// ViewAttempt returns what operators may see of a.
func ViewAttempt(a persist.Attempt) AttemptView {
	v := AttemptView{
		N:          a.N,
		Time:       a.Start,
		DurationMS: float64(a.Duration.Microseconds()) / 1000,
		Status:     a.Status,
		Class:      a.Class,
		Error:      RedactURLs(a.Error),
		TraceID:    a.TraceID,
	}
	v.Response, v.ResponseEncoding, v.ResponseTruncated = responseText(a.Response)
	return v
}

// responseText returns up to adminResponseKeep bytes of a response body,
// as text if they are UTF-8 (a rune cut by the limit does not count
// against that), else base64-encoded with encoding "base64", and whether
// the body went on past them (the attempt kept a byte more than it shows).
func responseText(b []byte) (text, encoding string, truncated bool) {
	if len(b) > adminResponseKeep {
		b, truncated = b[:adminResponseKeep], true
	}
	body := b
	if len(b) == adminResponseKeep {
		// Drop a rune the limit cut in two.
		for i := 0; i < utf8.UTFMax-1 && len(body) > 0; i++ {
			r, size := utf8.DecodeLastRune(body)
			if r != utf8.RuneError || size != 1 {
				break
			}
			body = body[:len(body)-1]
		}
		if !utf8.Valid(body) {
			body = b
		}
	}
	if utf8.Valid(body) {
		return string(body), "", truncated
	}
	return base64.StdEncoding.EncodeToString(b), "base64", truncated
}

// urlInText matches URLs in error text. Go's HTTP client quotes the URL
// of a failed request in its error; a URL may carry a token in its path
// or query (Slack-style webhook URLs do), so the admin API shows only
// its scheme and host.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)

// RedactURLs cuts every URL in s down to its scheme and host, so that a
// token in a path or query never reaches a log, an answer or a page.
func RedactURLs(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, func(u string) string {
		scheme, rest, _ := strings.Cut(u, "://")
		host := rest
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			host = rest[:i]
		}
		if at := strings.LastIndexByte(host, '@'); at >= 0 {
			host = host[at+1:]
		}
		if host == rest {
			return scheme + "://" + host
		}
		return scheme + "://" + host + "/…"
	})
}

// GET /webhooks/stats
func (a *adminAPI) stats(eng *Engine, w http.ResponseWriter, _ *http.Request, _ []string) *apiError {
	routes := eng.Stats()
	if routes == nil {
		routes = []RouteStats{}
	}
	writeJSON(w, http.StatusOK, statsAnswer{Routes: routes, Outbox: eng.OutboxHealth()})
	return nil
}

// GET /webhooks/events/{id}
func (a *adminAPI) event(eng *Engine, w http.ResponseWriter, _ *http.Request, parts []string) *apiError {
	id := parts[1]
	rec, err := eng.Event(id)
	if errors.Is(err, persist.ErrNotFound) {
		return apiErrorf(http.StatusNotFound, "not_found",
			"no event %q: never stored (unmatched events are kept only with keep_unmatched), or expired by retention", id)
	}
	if err != nil {
		return storeError(err, "reading event "+id)
	}
	ans := eventAnswer{Event: ViewEvent(rec.Event), Deliveries: make([]DeliveryView, 0, len(rec.Deliveries))}
	for _, d := range rec.Deliveries {
		v := ViewDelivery(d.Delivery)
		for _, at := range d.Attempts {
			v.History = append(v.History, ViewAttempt(at))
		}
		ans.Deliveries = append(ans.Deliveries, v)
	}
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// GET /webhooks/deliveries?route=&status=&type=&since=&until=&limit=&cursor=
//
// since and until (each optional) bound the half-open window [since,
// until) over the due time (pending), the time a delivery became final
// (delivered, dead) or its creation time (no status).
func (a *adminAPI) deliveries(eng *Engine, w http.ResponseWriter, r *http.Request, _ []string) *apiError {
	q := r.URL.Query()
	f := persist.ListFilter{Route: q.Get("route"), Cursor: q.Get("cursor"), Type: q.Get("type")}
	now := eng.Now()
	var err error
	if f.Since, err = ParseSince(q.Get("since"), now); err != nil {
		return apiErrorf(http.StatusBadRequest, "bad_request", "since: %v", err)
	}
	if f.Until, err = ParseSince(q.Get("until"), now); err != nil {
		return apiErrorf(http.StatusBadRequest, "bad_request", "until: %v", err)
	}
	if s := q.Get("status"); s != "" {
		st, ok := persist.ParseStatus(s)
		if !ok {
			return apiErrorf(http.StatusBadRequest, "bad_request", "status %q: expected pending, delivered or dead", s)
		}
		f.Status = st
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > persist.MaxListLimit {
			return apiErrorf(http.StatusBadRequest, "bad_request", "limit %q: expected a number from 1 to %d", s, persist.MaxListLimit)
		}
		f.Limit = n
	}
	ds, next, err := eng.Deliveries(f)
	if err != nil {
		return storeError(err, "listing deliveries")
	}
	if f.Route != "" && len(ds) == 0 && f.Cursor == "" && !eng.KnownRoute(f.Route) {
		// A misspelt route is not "nothing matches". (Deliveries of a
		// route gone from the config are still listed while stored.)
		return apiErrorf(http.StatusNotFound, "unknown_route", "no route %q in the config or the outbox", f.Route)
	}
	ans := listAnswer{Deliveries: make([]DeliveryView, 0, len(ds)), Next: next}
	for _, d := range ds {
		ans.Deliveries = append(ans.Deliveries, ViewDelivery(d))
	}
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// POST /webhooks/deliveries/{id}/retry
func (a *adminAPI) retry(eng *Engine, w http.ResponseWriter, _ *http.Request, parts []string) *apiError {
	id := parts[1]
	res, err := eng.Retry(id)
	switch {
	case errors.Is(err, persist.ErrNotFound):
		return apiErrorf(http.StatusNotFound, "not_found", "no delivery %q: never stored, or expired by retention", id)
	case errors.Is(err, ErrCannotRequeue):
		return apiErrorf(http.StatusConflict, "cannot_requeue",
			"delivery %q cannot be requeued: it or its event expired by retention", id)
	case err != nil:
		return storeError(err, "requeueing delivery "+id)
	}
	writeJSON(w, http.StatusOK, retryAnswer{Delivery: id, Route: res.Route, Was: res.Was.String(), Held: eng.Held(res.Route)})
	return nil
}

// POST /webhooks/routes/{name}/replay?status=dead&since=&until=&limit=
func (a *adminAPI) replay(eng *Engine, w http.ResponseWriter, r *http.Request, parts []string) *apiError {
	route := parts[1]
	q := r.URL.Query()
	now := eng.Now()
	st := persist.StatusDead
	if s := q.Get("status"); s != "" {
		var ok bool
		st, ok = persist.ParseStatus(s)
		if !ok || st == persist.StatusPending {
			return apiErrorf(http.StatusBadRequest, "bad_request", "status %q: expected dead or delivered (pending deliveries are queued already)", s)
		}
	}
	since, err := ParseSince(q.Get("since"), now)
	if err != nil {
		return apiErrorf(http.StatusBadRequest, "bad_request", "since: %v", err)
	}
	var until time.Time
	if s := q.Get("until"); s != "" {
		if until, err = ParseSince(s, now); err != nil {
			return apiErrorf(http.StatusBadRequest, "bad_request", "until: %v", err)
		}
	}
	if !until.IsZero() && until.Before(since) {
		// Swapped arguments: "0 replayed" would say nothing needed it.
		return apiErrorf(http.StatusBadRequest, "bad_request", "until %s is before since %s",
			until.Format(time.RFC3339), since.Format(time.RFC3339))
	}
	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return apiErrorf(http.StatusBadRequest, "bad_request", "limit %q: expected a positive number", s)
		}
		limit = n
	}
	if !validRouteName(route) {
		return apiErrorf(http.StatusNotFound, "unknown_route", "no route %q", route)
	}
	replayed, err := eng.Replay(route, st, since, until, limit)
	switch {
	case errors.Is(err, ErrUnknownRoute):
		return apiErrorf(http.StatusNotFound, "unknown_route", "no route %q in the config or the outbox", route)
	case err != nil:
		return storeError(err, fmt.Sprintf("requeueing (after %d replayed)", replayed))
	}
	writeJSON(w, http.StatusOK, replayAnswer{Route: route, Replayed: replayed})
	return nil
}

// ParseSince reads a time as the admin API, the CLI and the console take
// it: an RFC 3339 time, or a duration (Caddy's syntax, so "36h" or "2d")
// meaning that long before now; "" means the beginning (zero time).
func ParseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := caddy.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q: expected an RFC 3339 time (2026-11-23T10:00:00Z) or a duration before now (90m, 36h, 2d)", s)
	}
	return now.Add(-d), nil
}

// POST /webhooks/routes/{name}/pause and /resume
func (a *adminAPI) pause(eng *Engine, w http.ResponseWriter, _ *http.Request, parts []string) *apiError {
	route, paused := parts[1], parts[2] == "pause"
	err := eng.SetPaused(route, paused)
	switch {
	case errors.Is(err, ErrUnknownRoute):
		return apiErrorf(http.StatusNotFound, "unknown_route", "no route %q in the config or the outbox", route)
	case err != nil:
		return storeError(err, "saving the route's state")
	}
	writeJSON(w, http.StatusOK, pauseAnswer{Route: route, Paused: paused})
	return nil
}

// Interface guards
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
	_ caddy.Provisioner = (*adminAPI)(nil)
)
