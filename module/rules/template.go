package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Template is a url or header value with placeholders, parsed once at
// config load. {event.id}, {event.type}, {event.source}, {event.time} and
// {event.data.PATH} come from the event; any other {key} is one of Caddy's
// global placeholders ({env.*}, {file.*}, …). Expansion is one pass, so a
// value taken from an event is never expanded again: an event cannot smuggle
// {env.SECRET} into a request.
type Template struct {
	segs   []tmplSeg
	static bool   // no placeholders at all
	lit    string // the value, when static
	seen   string // parsing a URL: its literal text so far
}

type tmplSeg struct {
	lit    string
	key    string   // placeholder key, empty for a literal
	path   []string // for event.data.PATH
	escape escaping
}

type escaping uint8

const (
	escapeNone escaping = iota
	escapePath
	escapeQuery
	// escapeHost is for the host or port of a URL: a value must be a
	// host name, an IPv4 address or a port as it is, since escaping
	// cannot make "evil@other" or "80@other:81" safe there.
	escapeHost
)

// ParseTemplate parses s. In a URL template (isURL), event values are
// escaped for where they stand: the path before `?`, the query after it;
// in the host or port (after "://", before the path) a value must be one
// as it is, and in the path it may not be "." or "..".
// An unknown {event.*} placeholder or a malformed data path is an error;
// a `{` that opens no placeholder (no `}`, or a space inside) is kept as
// text.
func ParseTemplate(s string, isURL bool) (*Template, error) {
	t := &Template{}
	esc := escapeNone
	if isURL {
		esc = escapePath
	}
	for len(s) > 0 {
		open := strings.IndexByte(s, '{')
		if open < 0 {
			t.addLit(s, isURL, &esc)
			break
		}
		end := strings.IndexByte(s[open:], '}')
		if end < 0 {
			t.addLit(s, isURL, &esc)
			break
		}
		key := s[open+1 : open+end]
		if key == "" || strings.ContainsAny(key, " {\t") {
			t.addLit(s[:open+1], isURL, &esc)
			s = s[open+1:]
			continue
		}
		t.addLit(s[:open], isURL, &esc)
		seg := tmplSeg{key: key}
		if strings.HasPrefix(key, "event.") {
			seg.escape = esc
			switch key {
			case "event.id", "event.type", "event.source", "event.time":
			default:
				p, ok := strings.CutPrefix(key, "event.data.")
				if !ok || p == "" {
					return nil, fmt.Errorf("unknown placeholder {%s}: use {event.id}, {event.type}, {event.source}, {event.time} or {event.data.PATH}", key)
				}
				path, err := parseDataPath(p)
				if err != nil {
					return nil, fmt.Errorf("placeholder {%s}: %v", key, err)
				}
				seg.path = path
			}
		}
		t.segs = append(t.segs, seg)
		s = s[open+end+1:]
	}
	t.static = true
	for _, seg := range t.segs {
		if seg.key != "" {
			t.static = false
		}
		t.lit += seg.lit
	}
	return t, nil
}

func (t *Template) addLit(s string, isURL bool, esc *escaping) {
	if s == "" {
		return
	}
	if isURL {
		t.seen += s
		switch scheme, rest, ok := strings.Cut(t.seen, "://"); {
		case strings.ContainsAny(t.seen, "?#"):
			*esc = escapeQuery
		case ok && !strings.ContainsAny(scheme, "/") && !strings.Contains(rest, "/"):
			*esc = escapeHost
		default:
			*esc = escapePath
		}
	}
	if n := len(t.segs); n > 0 && t.segs[n-1].key == "" {
		// One literal segment per run of text, so Prefix is all of it.
		t.segs[n-1].lit += s
		return
	}
	t.segs = append(t.segs, tmplSeg{lit: s})
}

// Prefix is the text the template starts with, up to its first
// placeholder ("" when it starts with one): where a URL template must
// name its scheme and host.
func (t *Template) Prefix() string {
	if len(t.segs) == 0 || t.segs[0].key != "" {
		return ""
	}
	return t.segs[0].lit
}

// Literal returns the template's text and true when it holds no
// placeholders, so that every expansion is that text.
func (t *Template) Literal() (string, bool) { return t.lit, t.static }

// UsesEvent reports whether the template needs an event to expand (holds
// an {event.*} placeholder).
func (t *Template) UsesEvent() bool {
	for _, s := range t.segs {
		if strings.HasPrefix(s.key, "event.") {
			return true
		}
	}
	return false
}

// parseDataPath splits a.b[0].c or a.b.0.c into its steps.
func parseDataPath(p string) ([]string, error) {
	p = strings.NewReplacer("[", ".", "]", "").Replace(p)
	parts := strings.Split(p, ".")
	for _, part := range parts {
		if part == "" {
			return nil, fmt.Errorf("empty step in data path")
		}
	}
	return parts, nil
}

// Expand fills the template for one event, in one pass: a value taken
// from the event is never expanded again. repl supplies Caddy's global
// placeholders ({env.*}, {file.*}, …); a placeholder it does not know is
// kept as written. A missing or null {event.data.PATH}, or data that is
// not JSON, is an error that names the placeholder, never the data.
func (t *Template) Expand(c *Event, repl *caddy.Replacer) (string, error) {
	if t.static {
		return t.lit, nil
	}
	var b strings.Builder
	for _, seg := range t.segs {
		if seg.key == "" {
			b.WriteString(seg.lit)
			continue
		}
		var v string
		switch {
		case seg.key == "event.id":
			v = c.ev.ID
		case seg.key == "event.type":
			v = c.ev.Type
		case seg.key == "event.source":
			v = c.ev.Source
		case seg.key == "event.time":
			v = c.ev.Time.UTC().Format(time.RFC3339Nano)
		case seg.path != nil:
			data, err := c.value()
			if err != nil {
				return "", fmt.Errorf("{%s}: %v", seg.key, err)
			}
			v, err = lookupData(data, seg.path)
			if err != nil {
				return "", fmt.Errorf("{%s}: %v", seg.key, err)
			}
		default:
			val, ok := repl.Get(seg.key)
			if !ok {
				// Unknown to Caddy too: keep it literally, as Caddy does.
				b.WriteString("{" + seg.key + "}")
				continue
			}
			if val == nil {
				// Known but without a value: Caddy's {file.*} when the
				// file cannot be read (Caddy logs why). Sending on would
				// put "<nil>" or nothing where a secret or host belongs.
				return "", fmt.Errorf("{%s}: %w", seg.key, ErrNoValue)
			}
			v = caddy.ToString(val)
		}
		switch seg.escape {
		case escapePath:
			if v == "." || v == ".." {
				// A whole path segment of dots moves the request up
				// the receiver's path; escaped, many servers decode it
				// and do the same.
				return "", fmt.Errorf("{%s}: %q cannot stand in a URL path", seg.key, v)
			}
			// PathEscape keeps '@' and ':', which are plain in a path but
			// make a host or port of it when the scheme and host come
			// from a global placeholder ({env.BASE}{event.data.x}).
			v = pathAtColon.Replace(url.PathEscape(v))
		case escapeQuery:
			v = url.QueryEscape(v)
		case escapeHost:
			if !hostValue(v) {
				return "", fmt.Errorf("{%s}: in the host or port of a URL a value must be a host name (letters, digits, '-', '.', '_'), with or without a :port, a port or an IP address", seg.key)
			}
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// ErrNoValue is the error of an expansion that met a global placeholder
// Caddy knows but could not give a value for: a {file.*} whose file cannot
// be read. It is the operator's to fix, not the event's, so an attempt
// that meets it is worth retrying.
var ErrNoValue = errors.New("has no value (a file that cannot be read? Caddy's log says why)")

var pathAtColon = strings.NewReplacer("@", "%40", ":", "%3A")

// hostValue reports whether v can stand in a URL's host or port as it
// is: a host name (letters, digits, '-', '.', '_'), with or without a
// ":port", a port alone, or an IPv6 address (for a template that
// brackets it). Never userinfo ('@') or anything that ends the host.
func hostValue(v string) bool {
	if ip := net.ParseIP(v); ip != nil {
		return true
	}
	host, port, found := strings.Cut(v, ":")
	if found && (port == "" || strings.Trim(port, "0123456789") != "") {
		return false
	}
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// lookupData walks path through parsed JSON and renders the value found:
// strings as they are, numbers and booleans as JSON, objects and arrays as
// compact JSON.
func lookupData(data any, path []string) (string, error) {
	cur := data
	for i, step := range path {
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[step]
			if !ok {
				return "", fmt.Errorf("no field %q in event data", strings.Join(path[:i+1], "."))
			}
			cur = next
		case []any:
			n, err := strconv.Atoi(step)
			if err != nil || n < 0 || n >= len(v) {
				return "", fmt.Errorf("no element %q in event data", strings.Join(path[:i+1], "."))
			}
			cur = v[n]
		default:
			return "", fmt.Errorf("no field %q in event data", strings.Join(path[:i+1], "."))
		}
	}
	switch v := cur.(type) {
	case string:
		return v, nil
	case nil:
		return "", fmt.Errorf("field %q in event data is null", strings.Join(path, "."))
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(v), nil
	}
	b, err := json.Marshal(cur)
	return string(b), err
}
