package rules

import (
	"fmt"
	"strings"
)

// ValidType reports whether s is a valid event type: 1–200 characters of
// A-Z a-z 0-9 . _ - : /. Topic patterns are made of the same characters,
// with `*` and `**` as whole segments.
func ValidType(s string) bool {
	if len(s) == 0 || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !typeChar(s[i]) && s[i] != '.' {
			return false
		}
	}
	return true
}

func typeChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '-' || c == ':' || c == '/'
}

// Topic is a compiled topic pattern: a dotted event type in which a `*`
// segment matches exactly one segment and a `**` segment any number of
// them, none included (task.** matches task). A lone `*` or `**` matches
// every type.
type Topic struct {
	all      bool
	exact    string // set when the pattern has no wildcard
	segments []string
}

// ParseTopic parses a topic pattern. Errors quote the pattern and say
// what a segment may hold.
func ParseTopic(s string) (Topic, error) {
	if s == "*" || s == "**" {
		return Topic{all: true}, nil
	}
	if s == "" {
		return Topic{}, fmt.Errorf("empty topic pattern")
	}
	segs := strings.Split(s, ".")
	wild := false
	for _, seg := range segs {
		switch {
		case seg == "":
			return Topic{}, fmt.Errorf("topic pattern %q has an empty segment", s)
		case seg == "*" || seg == "**":
			wild = true
		case strings.Contains(seg, "*"):
			return Topic{}, fmt.Errorf("topic pattern %q: `*` and `**` must be whole segments", s)
		case !ValidType(seg):
			return Topic{}, fmt.Errorf("topic pattern %q: segments use A-Z a-z 0-9 _ - : /", s)
		}
	}
	if !wild {
		return Topic{exact: s}, nil
	}
	return Topic{segments: segs}, nil
}

// Match reports whether the event type t matches the pattern. It does
// not allocate.
func (p Topic) Match(t string) bool {
	if p.all {
		return true
	}
	if p.segments == nil {
		return p.exact == t
	}
	return matchSegments(p.segments, t)
}

// matchSegments matches pattern segments against the dotted string t
// without allocating.
func matchSegments(pat []string, t string) bool {
	seg := pat[0]
	if seg == "**" {
		if len(pat) == 1 {
			return true
		}
		// ** consumes nothing, or one more segment and stays.
		if matchSegments(pat[1:], t) {
			return true
		}
		_, rest, more := strings.Cut(t, ".")
		return more && matchSegments(pat, rest)
	}
	head, rest, more := strings.Cut(t, ".")
	if seg != "*" && seg != head {
		return false
	}
	if len(pat) == 1 {
		return !more
	}
	if !more {
		// t is used up: what is left of the pattern must match nothing.
		for _, s := range pat[1:] {
			if s != "**" {
				return false
			}
		}
		return true
	}
	return matchSegments(pat[1:], rest)
}
