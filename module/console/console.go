// Package console is `http.handlers.webhook_console`: web pages for
// operators to watch and steer the gateway (routes and their last hour,
// deliveries, events and their attempts; retry, replay, pause, resume,
// send a test event), mounted on any site and protected by that site's
// own Caddy auth.
//
// It reaches the gateway only through the engine's exported API and
// shows only what the admin API shows (the same redacted views). Pages
// are html/template with embedded assets; live updates are Server-Sent
// Events. Actions are POSTs with a same-origin check and a CSRF token.
package console

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hookgate/hookgate/module"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the `webhook_console` HTTP handler. It answers every
// request under Path itself and passes others on.
//
// It has no authentication of its own: put it behind the site's
// `basic_auth`, `forward_auth` or client certificates. It logs a warning
// (once) and shows a banner when it serves a request with no user (see
// User), since then anyone who can reach the site can retry, replay and
// pause deliveries.
type Handler struct {
	// Path is where the console lives on the site, such as
	// "/ops/webhooks": it serves Path and everything under it and builds
	// its links from it. Default: the site's root. Do not strip it
	// before the console (handle_path): the links would miss it.
	Path string `json:"path,omitempty"`

	// TraceURL links trace ids to a trace UI: a URL with {trace_id} in
	// it, such as "https://jaeger.example/trace/{trace_id}". Default:
	// trace ids are shown as text.
	TraceURL string `json:"trace_url,omitempty"`

	// User is a placeholder naming who makes a request: shown in the
	// console, written in the log line of every action and mixed into
	// its CSRF tokens. Default: "{http.auth.user.id}" (set by
	// basic_auth and other Caddy authentication). Behind forward_auth,
	// name the header it copies, such as
	// "{http.request.header.Remote-User}"; with client certificates,
	// "{http.request.tls.client.subject}". Name only what your auth
	// sets, since a client could send anything else itself.
	User string `json:"user,omitempty"`

	prefix string // Path without its trailing slash; "" at the root
	logger *zap.Logger
	app    *module.App
	pages  *pages
	// done is closed when the server shuts down (or in Cleanup): live
	// streams of this config end, so a reload does not wait on them.
	done     chan struct{}
	doneOnce *sync.Once
	// warned is set once the missing-auth warning is logged.
	warned *atomic.Bool
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.webhook_console",
		New: func() caddy.Module { return new(Handler) },
	}
}

// defaultUser is who makes a request unless User says otherwise.
const defaultUser = "{http.auth.user.id}"

// Provision checks the settings, loads the webhooks app (with defaults
// if the config has none, as webhook_ingest does) and parses the pages.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.done, h.doneOnce, h.warned = make(chan struct{}), new(sync.Once), new(atomic.Bool)
	if err := CheckPath(h.Path); err != nil {
		return err
	}
	h.prefix = strings.TrimRight(h.Path, "/")
	if err := CheckTraceURL(h.TraceURL); err != nil {
		return err
	}
	if h.User == "" {
		h.User = defaultUser
	}
	var err error
	if h.pages, err = loadPages(); err != nil {
		return err
	}
	appIface, err := ctx.App("webhooks")
	if err != nil {
		return fmt.Errorf("loading webhooks app: %v", err)
	}
	h.app = appIface.(*module.App)
	// When Caddy exits, its servers wait for their requests to finish
	// before the handlers are cleaned up (with no grace_period, for as
	// long as it takes), and a live stream does not finish by itself.
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
		srv.RegisterOnShutdown(h.endStreams)
	}
	h.logger.Info("webhook console mounted; it has no authentication of its own and relies on the site's (basic_auth, forward_auth, client certificates)",
		zap.String("path", h.prefix+"/"))
	return nil
}

// CheckPath checks a console path: empty (the site's root) or a plain
// path starting with /.
func CheckPath(p string) error {
	if p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, "*?#%{}\\ \t")) {
		return fmt.Errorf("path %q: expected a plain path starting with /, such as /ops/webhooks", p)
	}
	return nil
}

// CheckTraceURL checks a trace URL template: empty, or an http(s) URL
// with {trace_id} in it.
func CheckTraceURL(s string) error {
	if s == "" {
		return nil
	}
	if !strings.Contains(s, "{trace_id}") {
		return fmt.Errorf("trace_url %q: expected a URL with {trace_id} in it, such as https://jaeger.example/trace/{trace_id}", s)
	}
	if !strings.HasPrefix(s, "https://") && !strings.HasPrefix(s, "http://") {
		return fmt.Errorf("trace_url %q: expected an http:// or https:// URL", s)
	}
	return nil
}

// Cleanup ends this config's live streams.
func (h *Handler) Cleanup() error {
	h.endStreams()
	return nil
}

// endStreams ends the live streams this handler serves.
func (h *Handler) endStreams() {
	if h.done != nil {
		h.doneOnce.Do(func() { close(h.done) })
	}
}

// ServeHTTP answers requests under Path and passes the rest to next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rest, ok := h.under(r.URL.Path)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	setSecurityHeaders(w.Header())
	rq := h.newRequest(w, r, rest)
	h.checkAuth(rq)
	h.route(rq)
	return nil
}

// under returns the part of path below the console's prefix ("/" for
// the console's root).
func (h *Handler) under(path string) (string, bool) {
	if h.prefix == "" {
		return path, true
	}
	rest, ok := strings.CutPrefix(path, h.prefix)
	if !ok || rest != "" && rest[0] != '/' {
		return "", false
	}
	if rest == "" {
		rest = "/"
	}
	return rest, true
}

// setSecurityHeaders keeps the pages from being framed (a click on a
// framed action button would be a forged action), from loading anything
// from elsewhere, and from being cached.
func setSecurityHeaders(hd http.Header) {
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	// Same-origin requests keep their Referer: the same-origin check
	// falls back on it for browsers that send no Origin.
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
}

// request is one request to the console with what every page needs.
type request struct {
	w    http.ResponseWriter
	r    *http.Request
	rest string // the path below the console's prefix
	user string // who makes it; "" when no authentication said
}

func (h *Handler) newRequest(w http.ResponseWriter, r *http.Request, rest string) *request {
	user := ""
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		user = strings.TrimSpace(repl.ReplaceAll(h.User, ""))
	}
	return &request{w: w, r: r, rest: rest, user: user}
}

// checkAuth logs once that the console served a request with no
// authenticated user. It cannot see the handlers in front of it, so it
// judges by what they leave: a user id.
func (h *Handler) checkAuth(rq *request) {
	if rq.user != "" || h.warned.Load() || !h.warned.CompareAndSwap(false, true) {
		return
	}
	h.logger.Warn("webhook console served a request with no authenticated user: anyone who can reach this site can see events and retry, replay and pause deliveries; put it behind basic_auth, forward_auth or client certificates (and set the console's user placeholder to what they set)",
		zap.String("path", h.prefix+"/"), zap.String("user_placeholder", h.User), zap.String("remote", rq.r.RemoteAddr))
}

// engine returns the running engine, or answers 503 and returns nil.
func (h *Handler) engine(rq *request) *module.Engine {
	ctx, cancel := context.WithCancel(rq.r.Context())
	defer cancel()
	eng := h.app.Engine(ctx)
	if eng == nil {
		rq.w.Header().Set("Retry-After", "1")
		h.errorPage(rq, http.StatusServiceUnavailable, "The gateway is not running",
			"The webhooks app is configured but has not started (or is stopping). Try again in a moment.")
	}
	return eng
}

// route dispatches a request by its path below the prefix.
func (h *Handler) route(rq *request) {
	parts := strings.Split(strings.Trim(rq.rest, "/"), "/")
	get := func(fn func(*request, []string)) {
		if rq.r.Method != http.MethodGet && rq.r.Method != http.MethodHead {
			h.wrongMethod(rq, "GET")
			return
		}
		fn(rq, parts)
	}
	post := func(fn func(*request, []string)) {
		if rq.r.Method != http.MethodPost {
			h.wrongMethod(rq, "POST")
			return
		}
		if !h.checkPost(rq) {
			return
		}
		fn(rq, parts)
	}
	switch n := len(parts); {
	case rq.rest == "/":
		get(h.overview)
	case n == 2 && parts[0] == "static" && parts[1] != "":
		get(h.static)
	case n == 1 && parts[0] == "deliveries":
		get(h.deliveries)
	case n == 1 && parts[0] == "live":
		get(h.live)
	case n == 2 && parts[0] == "events" && parts[1] != "":
		get(h.event)
	case n == 2 && parts[0] == "deliveries" && parts[1] != "":
		get(h.delivery)
	case n == 3 && parts[0] == "deliveries" && parts[1] != "" && parts[2] == "retry":
		post(h.retry)
	case n == 3 && parts[0] == "routes" && parts[1] != "" && (parts[2] == "pause" || parts[2] == "resume"):
		post(h.pause)
	case n == 3 && parts[0] == "routes" && parts[1] != "" && parts[2] == "replay":
		post(h.replay)
	case n == 3 && parts[0] == "routes" && parts[1] != "" && parts[2] == "send":
		post(h.send)
	default:
		h.errorPage(rq, http.StatusNotFound, "Page not found",
			"There is no console page at "+rq.r.URL.Path+".")
	}
}

func (h *Handler) wrongMethod(rq *request, allow string) {
	rq.w.Header().Set("Allow", allow)
	h.errorPage(rq, http.StatusMethodNotAllowed, "Method not allowed",
		fmt.Sprintf("%s takes %s requests; this was %s.", rq.r.URL.Path, allow, rq.r.Method))
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
