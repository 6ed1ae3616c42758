package module

import (
	"net/http"
	"strings"
)

// adminEndpoint is one endpoint of the admin API: a method and a path
// under /webhooks/ whose {name} segments match any non-empty segment.
// The OpenAPI test walks this table, so an endpoint that is served is
// an endpoint that is documented.
type adminEndpoint struct {
	method string
	path   string // e.g. "routes/{name}/send"
	// handle answers with the running engine; static answers without one
	// (it works when the webhooks app is not configured).
	handle func(*adminAPI, *Engine, http.ResponseWriter, *http.Request, []string) *apiError
	static func(http.ResponseWriter, *http.Request)
}

// adminEndpoints is every endpoint the admin API answers.
var adminEndpoints = []adminEndpoint{
	{method: http.MethodGet, path: "openapi.json", static: serveOpenAPI},
	{method: http.MethodGet, path: "stats", handle: (*adminAPI).stats},
	{method: http.MethodGet, path: "events/{id}", handle: (*adminAPI).event},
	{method: http.MethodGet, path: "deliveries", handle: (*adminAPI).deliveries},
	{method: http.MethodPost, path: "deliveries/{id}/retry", handle: (*adminAPI).retry},
	{method: http.MethodPost, path: "routes/{name}/replay", handle: (*adminAPI).replay},
	{method: http.MethodPost, path: "routes/{name}/pause", handle: (*adminAPI).pause},
	{method: http.MethodPost, path: "routes/{name}/resume", handle: (*adminAPI).pause},
	{method: http.MethodPost, path: "routes/{name}/send", handle: (*adminAPI).send},
	{method: http.MethodPost, path: "routes/{name}/backfill", handle: (*adminAPI).backfill},
	{method: http.MethodGet, path: "tail", handle: (*adminAPI).tail},
}

// match reports whether the path segments under /webhooks/ are ep's.
func (ep *adminEndpoint) match(parts []string) bool {
	want := strings.Split(ep.path, "/")
	if len(want) != len(parts) {
		return false
	}
	for i, w := range want {
		switch {
		case strings.HasPrefix(w, "{"):
			if parts[i] == "" {
				return false
			}
		case w != parts[i]:
			return false
		}
	}
	return true
}
