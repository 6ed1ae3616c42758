package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hookgate/hookgate/module"
	"github.com/hookgate/hookgate/persist"
)

//go:embed templates/*.html static/*
var assets embed.FS

// pages are the parsed templates, one set per page, each with the
// layout.
type pages struct {
	t map[string]*template.Template
}

var pageNames = []string{"overview", "deliveries", "event", "send", "error"}

func loadPages() (*pages, error) {
	p := &pages{t: make(map[string]*template.Template)}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %v", name, err)
		}
		p.t[name] = t
	}
	return p, nil
}

// page is what the layout needs, with the page's own data in Data.
type page struct {
	Title  string
	Nav    string // the nav entry to mark current
	Prefix string
	User   string
	CSRF   string
	// Return is the current page's path and query, where actions send
	// the browser back to.
	Return string
	Now    time.Time
	Notice string // what the last action did, from the query
	// NoAuth shows the banner that says anyone can use this console.
	NoAuth bool
	Data   any
}

// render writes the named page.
func (h *Handler) render(rq *request, status int, name, title, nav string, now time.Time, data any) {
	p := page{
		Title:  title,
		Nav:    nav,
		Prefix: h.prefix,
		User:   rq.user,
		CSRF:   h.csrfToken(rq.user),
		Return: rq.r.URL.RequestURI(),
		Now:    now,
		Notice: noticeText(rq.r.URL.Query()),
		NoAuth: rq.user == "",
		Data:   data,
	}
	var buf bytes.Buffer
	if err := h.pages.t[name].Execute(&buf, p); err != nil {
		h.logger.Error("webhook console: rendering a page", zap.String("page", name), zap.Error(err))
		http.Error(rq.w, "the console could not render this page; the error is in Caddy's log", http.StatusInternalServerError)
		return
	}
	rq.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	rq.w.WriteHeader(status)
	if rq.r.Method != http.MethodHead {
		_, _ = rq.w.Write(buf.Bytes())
	}
}

// errorPage answers status with a page that says what went wrong.
func (h *Handler) errorPage(rq *request, status int, title, msg string) {
	h.render(rq, status, "error", title, "", time.Now(), struct {
		Status  int
		Message string
	}{status, msg})
}

// noticeText says what the action a browser was sent back from did.
func noticeText(q url.Values) string {
	subject, n, was := q.Get("subject"), q.Get("n"), q.Get("was")
	// Only what an action puts there: a link someone crafted cannot make
	// the console say anything else.
	if !module.ValidID(subject) && module.ValidRouteName(subject) != nil {
		return ""
	}
	if _, ok := persist.ParseStatus(was); was != "" && !ok {
		return ""
	}
	switch q.Get("notice") {
	case "retried":
		switch held := q.Get("held"); held {
		case "":
			return fmt.Sprintf("Delivery %s is queued to be sent now (it was %s).", subject, was)
		case "paused", "disabled", "unverified", "removed", "circuit_open":
			return fmt.Sprintf("Delivery %s is queued (it was %s), but its route sends nothing now (%s): it waits for the route.",
				subject, was, strings.ReplaceAll(held, "_", " "))
		}
		return ""
	case "paused":
		return fmt.Sprintf("Route %s is paused: events still queue, nothing is sent until it is resumed.", subject)
	case "resumed":
		return fmt.Sprintf("Route %s is resumed; if its circuit was open, the next pending delivery goes out as the probe now.", subject)
	case "replayed":
		if _, err := strconv.Atoi(n); err != nil {
			return ""
		}
		return fmt.Sprintf("Requeued %s %s deliveries of route %s.", n, was, subject)
	}
	return ""
}

// GET /static/{file}
func (h *Handler) static(rq *request, parts []string) {
	name := parts[1]
	b, err := fs.ReadFile(assets, "static/"+name)
	if err != nil {
		h.errorPage(rq, http.StatusNotFound, "Not found", "No console asset "+name+".")
		return
	}
	ctype := "application/octet-stream"
	switch path.Ext(name) {
	case ".css":
		ctype = "text/css; charset=utf-8"
	case ".js":
		ctype = "text/javascript; charset=utf-8"
	case ".svg":
		ctype = "image/svg+xml"
	}
	rq.w.Header().Set("Content-Type", ctype)
	// Assets change only with the binary; an hour saves reloads.
	rq.w.Header().Set("Cache-Control", "max-age=3600")
	if rq.r.Method != http.MethodHead {
		_, _ = rq.w.Write(b)
	}
}

// routeCard is one route on the overview.
type routeCard struct {
	module.RouteStats
	Counts  chart
	Latency chart
	// Summary is the last hour in words, for screen readers and the
	// chart's caption.
	Summary string
}

// GET /
func (h *Handler) overview(rq *request, _ []string) {
	eng := h.engine(rq)
	if eng == nil {
		return
	}
	now := eng.Now()
	stats := eng.Stats()
	cards := make([]routeCard, 0, len(stats))
	for _, st := range stats {
		hist := eng.History(st.Route)
		c := routeCard{RouteStats: st, Counts: countChart(hist), Latency: latencyChart(hist)}
		c.Summary = hourSummary(hist)
		cards = append(cards, c)
	}
	h.render(rq, http.StatusOK, "overview", "Routes", "overview", now, struct {
		Routes []routeCard
		Outbox *module.OutboxHealth
	}{cards, eng.OutboxHealth()})
}

// deliveriesData is the deliveries page.
type deliveriesData struct {
	Routes []string // for the route filter
	Route  string
	Status string
	ID     string
	// Type, Since and Until are the event type and time-window filters
	// as typed (since and until: "1h", "24h" or an RFC 3339 time).
	Type, Since, Until string
	// Message explains an empty result or a failed id search.
	Message    string
	Deliveries []module.DeliveryView
	Next       string // the next page's URL, "" on the last
	First      string // the first page's URL, when this is a later one
}

// pageSize is how many deliveries a page lists.
const pageSize = 50

// GET /deliveries?route=&status=&type=&since=&until=&id=&cursor=
func (h *Handler) deliveries(rq *request, _ []string) {
	eng := h.engine(rq)
	if eng == nil {
		return
	}
	q := rq.r.URL.Query()
	d := deliveriesData{Route: q.Get("route"), Status: q.Get("status"), ID: strings.TrimSpace(q.Get("id")),
		Type: strings.TrimSpace(q.Get("type")), Since: strings.TrimSpace(q.Get("since")), Until: strings.TrimSpace(q.Get("until"))}
	for _, st := range eng.Stats() {
		d.Routes = append(d.Routes, st.Route)
	}
	now := eng.Now()
	if d.ID != "" {
		// A direct look-up of an event, else a delivery, by id.
		if module.ValidID(d.ID) {
			if _, err := eng.Event(d.ID); err == nil {
				http.Redirect(rq.w, rq.r, h.prefix+"/events/"+url.PathEscape(d.ID), http.StatusSeeOther)
				return
			} else if !errors.Is(err, persist.ErrNotFound) {
				h.storeError(rq, err)
				return
			}
			if dl, err := eng.Delivery(d.ID); err == nil {
				http.Redirect(rq.w, rq.r, h.eventURL(dl.EventID, dl.ID), http.StatusSeeOther)
				return
			} else if !errors.Is(err, persist.ErrNotFound) {
				h.storeError(rq, err)
				return
			}
		}
		d.Message = fmt.Sprintf("No event or delivery has the id %q: it was never stored, it expired by retention, or the event matched no route (unmatched events are kept only with keep_unmatched).", d.ID)
		h.render(rq, http.StatusNotFound, "deliveries", "Deliveries", "deliveries", now, d)
		return
	}
	f := persist.ListFilter{Route: d.Route, Limit: pageSize, Cursor: q.Get("cursor")}
	if d.Route != "" && module.ValidRouteName(d.Route) != nil {
		h.errorPage(rq, http.StatusBadRequest, "Bad filter", fmt.Sprintf("Route %q is not a route name.", d.Route))
		return
	}
	if d.Route != "" && !eng.KnownRoute(d.Route) {
		// As the admin API answers it: an empty list would read as a
		// route with nothing, under a filter that shows "all routes".
		h.errorPage(rq, http.StatusNotFound, "Unknown route", fmt.Sprintf("There is no route %q in the config or the outbox.", d.Route))
		return
	}
	if d.Status != "" {
		st, ok := persist.ParseStatus(d.Status)
		if !ok {
			h.errorPage(rq, http.StatusBadRequest, "Bad filter", fmt.Sprintf("Status %q: expected pending, delivered or dead.", d.Status))
			return
		}
		f.Status = st
	}
	f.Type = d.Type
	var err error
	if f.Since, err = module.ParseSince(d.Since, now); err != nil {
		h.errorPage(rq, http.StatusBadRequest, "Bad filter", "Since "+err.Error()+".")
		return
	}
	if f.Until, err = module.ParseSince(d.Until, now); err != nil {
		h.errorPage(rq, http.StatusBadRequest, "Bad filter", "Until "+err.Error()+".")
		return
	}
	if err := f.Check(); err != nil {
		h.errorPage(rq, http.StatusBadRequest, "Bad filter", "The time window ends before it starts: until must be later than since.")
		return
	}
	ds, next, err := eng.Deliveries(f)
	if err != nil {
		h.storeError(rq, err)
		return
	}
	d.Deliveries = make([]module.DeliveryView, 0, len(ds))
	for _, dl := range ds {
		d.Deliveries = append(d.Deliveries, module.ViewDelivery(dl))
	}
	base := url.Values{}
	if d.Route != "" {
		base.Set("route", d.Route)
	}
	if d.Status != "" {
		base.Set("status", d.Status)
	}
	for k, v := range map[string]string{"type": d.Type, "since": d.Since, "until": d.Until} {
		if v != "" {
			base.Set(k, v)
		}
	}
	if next != "" {
		nq := url.Values{"cursor": {next}}
		for k, v := range base {
			nq[k] = v
		}
		d.Next = h.prefix + "/deliveries?" + nq.Encode()
	}
	if f.Cursor != "" {
		d.First = h.prefix + "/deliveries"
		if len(base) > 0 {
			d.First += "?" + base.Encode()
		}
	}
	switch {
	case len(ds) == 0 && next != "":
		d.Message = "This part of the outbox holds none that match; the listing goes on on the next page."
	case len(ds) == 0 && f.Cursor != "":
		d.Message = "No more deliveries."
	case len(ds) == 0:
		d.Message = "No deliveries match. Events appear here once an application sends one that matches a route."
	}
	h.render(rq, http.StatusOK, "deliveries", "Deliveries", "deliveries", now, d)
}

// eventURL is the event page, at the given delivery if any.
func (h *Handler) eventURL(eventID, deliveryID string) string {
	u := h.prefix + "/events/" + url.PathEscape(eventID)
	if deliveryID != "" {
		u += "#d-" + deliveryID
	}
	return u
}

// GET /deliveries/{id}: its event's page, at the delivery.
func (h *Handler) delivery(rq *request, parts []string) {
	eng := h.engine(rq)
	if eng == nil {
		return
	}
	id := parts[1]
	dl, err := eng.Delivery(id)
	if errors.Is(err, persist.ErrNotFound) {
		h.errorPage(rq, http.StatusNotFound, "No such delivery",
			"There is no delivery "+id+": it was never stored, or it expired by retention.")
		return
	}
	if err != nil {
		h.storeError(rq, err)
		return
	}
	http.Redirect(rq.w, rq.r, h.eventURL(dl.EventID, dl.ID), http.StatusSeeOther)
}

// envelopeCap bounds the envelope the event page shows.
const envelopeCap = 64 << 10

// eventData is the event page.
type eventData struct {
	Event    module.EventView
	Envelope string // pretty JSON, cut at envelopeCap
	Cut      int    // bytes left out of Envelope
	Size     int    // the envelope's full size
	// Deliveries, each with its attempts (History).
	Deliveries []module.DeliveryView
	TraceURL   string
}

// GET /events/{id}
func (h *Handler) event(rq *request, parts []string) {
	eng := h.engine(rq)
	if eng == nil {
		return
	}
	id := parts[1]
	rec, err := eng.Event(id)
	if errors.Is(err, persist.ErrNotFound) {
		h.errorPage(rq, http.StatusNotFound, "No such event",
			"There is no event "+id+": it was never stored (events that match no route are kept only with keep_unmatched), or it expired by retention.")
		return
	}
	if err != nil {
		h.storeError(rq, err)
		return
	}
	d := eventData{Event: module.ViewEvent(rec.Event), TraceURL: h.TraceURL}
	// As stored: no \u003c for <, the page escapes it itself.
	var eb bytes.Buffer
	enc := json.NewEncoder(&eb)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(d.Event)
	env := bytes.TrimSuffix(eb.Bytes(), []byte("\n"))
	d.Size = len(env)
	if len(env) > envelopeCap {
		cut := envelopeCap
		for cut > 0 && env[cut]&0xC0 == 0x80 {
			cut-- // not inside a rune
		}
		d.Cut, env = len(env)-cut, env[:cut]
	}
	d.Envelope = string(env)
	for _, dr := range rec.Deliveries {
		v := module.ViewDelivery(dr.Delivery)
		for _, a := range dr.Attempts {
			v.History = append(v.History, module.ViewAttempt(a))
		}
		d.Deliveries = append(d.Deliveries, v)
	}
	h.render(rq, http.StatusOK, "event", "Event "+id, "", eng.Now(), d)
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	// ts is a time for people: UTC, to the second.
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	// iso is a time for <time datetime>.
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// ago is how long before now t was ("in 3m" for a time to come).
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		d := now.Sub(t)
		if d < 0 {
			return "in " + short(-d)
		}
		return short(d) + " ago"
	},
	"ms": func(ms float64) string {
		switch {
		case ms < 10:
			return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
		case ms < 10_000:
			return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
		}
		return strconv.FormatFloat(ms/1000, 'f', 1, 64) + " s"
	},
	// traceLink fills a trace URL template; html/template checks the
	// result is a safe URL.
	"traceLink": func(tmpl, id string) string {
		return strings.ReplaceAll(tmpl, "{trace_id}", url.PathEscape(id))
	},
	"eventURL": func(prefix, eventID, deliveryID string) string {
		u := prefix + "/events/" + url.PathEscape(eventID)
		if deliveryID != "" {
			u += "#d-" + deliveryID
		}
		return u
	},
	"pathEscape": url.PathEscape,
	"traceArgs":  func(tmpl, id string) traceArgs { return traceArgs{URL: tmpl, ID: id} },
	"cap": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
}

// traceArgs are the "trace" template's: a URL template and a trace id.
type traceArgs struct{ URL, ID string }

// short writes a duration with one or two units: 45s, 3m, 2h5m, 3d.
func short(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return strconv.Itoa(h) + "h"
		}
		return strconv.Itoa(h) + "h" + strconv.Itoa(m) + "m"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}
