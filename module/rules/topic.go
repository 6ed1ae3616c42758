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

// matchSegments matches pattern segments against the segments of the
// dotted string t (t always has at least one, possibly empty). It is the
// greedy wildcard match with one-step backtracking: `**` first takes no
// segment, and on a later mismatch the most recent `**` takes one more and
// matching resumes after it. Going back only to the most recent `**` is
// enough (whatever an earlier one could take, the later one can take as
// well), so the time is O(len(pattern) × len(t)) with no recursion: an
// event type chosen by a sender cannot make it backtrack exponentially.
// It does not allocate.
func matchSegments(pat []string, t string) bool {
	// i is the offset in t of the next segment; len(t)+1 once t is used up.
	p, i := 0, 0
	star, starI := -1, 0 // the last ** seen, and where its take ends
	for i <= len(t) {
		if p < len(pat) {
			if pat[p] == "**" {
				star, starI = p, i
				p++
				continue
			}
			seg, next := segment(t, i)
			if pat[p] == "*" || pat[p] == seg {
				p, i = p+1, next
				continue
			}
		}
		if star < 0 {
			return false
		}
		// Let the last ** take one more segment, and retry after it.
		_, starI = segment(t, starI)
		p, i = star+1, starI
	}
	// t is used up: what is left of the pattern must match nothing.
	for ; p < len(pat); p++ {
		if pat[p] != "**" {
			return false
		}
	}
	return true
}

// segment returns the segment of t at offset i and the offset of the one
// after it (len(t)+1 when it is the last).
func segment(t string, i int) (string, int) {
	if j := strings.IndexByte(t[i:], '.'); j >= 0 {
		return t[i : i+j], i + j + 1
	}
	return t[i:], len(t) + 1
}
