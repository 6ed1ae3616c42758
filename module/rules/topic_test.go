package rules

import (
	"strings"
	"testing"
)

func TestParseTopicMatch(t *testing.T) {
	tests := []struct {
		pattern string
		yes     []string
		no      []string
	}{
		{
			pattern: "task.created",
			yes:     []string{"task.created"},
			no:      []string{"task", "task.created.x", "x.task.created", "task.create", "Task.created", "taskXcreated", ""},
		},
		{
			pattern: "task.*",
			yes:     []string{"task.created", "task.finished", "task.a"},
			no:      []string{"task", "task.a.b", "tasks.created", "x.task.a", "", "other.created"},
		},
		{
			pattern: "*.created",
			yes:     []string{"task.created", "a.created"},
			no:      []string{"created", "a.b.created", "task.created.x"},
		},
		{
			pattern: "task.**",
			yes:     []string{"task", "task.a", "task.a.b", "task.a.b.c.d"},
			no:      []string{"tasks", "tas", "x.task", "x.task.a", "tasks.a", ""},
		},
		{
			pattern: "**.done",
			yes:     []string{"done", "a.done", "a.b.done", "a.b.c.done"},
			no:      []string{"done.x", "a.done.x", "undone", "a.undone", "a.b", ""},
		},
		{
			pattern: "*",
			yes:     []string{"task", "task.created", "a.b.c.d", "x"},
		},
		{
			pattern: "**",
			yes:     []string{"task", "task.created", "a.b.c.d", "x"},
		},
		{
			pattern: "a.*.c.**",
			yes:     []string{"a.b.c", "a.x.c", "a.b.c.d", "a.b.c.d.e.f"},
			no:      []string{"a.c", "a.b.b.c", "a.b", "a.b.d", "x.b.c", "a.b.cd", "a"},
		},
		{
			pattern: "a.**.z",
			yes:     []string{"a.z", "a.b.z", "a.b.c.z"},
			no:      []string{"a", "z", "a.z.b", "b.a.z"},
		},
		{
			pattern: "a.**.**",
			yes:     []string{"a", "a.b", "a.b.c"},
			no:      []string{"b", "b.a"},
		},
		{
			pattern: "*.*",
			yes:     []string{"a.b"},
			no:      []string{"a", "a.b.c"},
		},
		{
			pattern: "github.pull_request:opened/x-y",
			yes:     []string{"github.pull_request:opened/x-y"},
			no:      []string{"github.pull_request"},
		},
	}
	for _, tc := range tests {
		p, err := ParseTopic(tc.pattern)
		if err != nil {
			t.Errorf("ParseTopic(%q): unexpected error %v", tc.pattern, err)
			continue
		}
		for _, s := range tc.yes {
			if !p.Match(s) {
				t.Errorf("pattern %q should match %q", tc.pattern, s)
			}
		}
		for _, s := range tc.no {
			if p.Match(s) {
				t.Errorf("pattern %q should not match %q", tc.pattern, s)
			}
		}
	}
}

func TestParseTopicInvalid(t *testing.T) {
	tests := []struct {
		pattern string
		errHas  string
	}{
		{"", "empty topic pattern"},
		{"a..b", "empty segment"},
		{".a", "empty segment"},
		{"a.", "empty segment"},
		{".", "empty segment"},
		{"ta*sk", "whole segments"},
		{"task.*x", "whole segments"},
		{"***", "whole segments"},
		{"task.***", "whole segments"},
		{"task created", "segments use"},
		{"tâsk", "segments use"},
		{"task.crea+ted", "segments use"},
		{"task,created", "segments use"},
		{"task.#", "segments use"},
	}
	for _, tc := range tests {
		_, err := ParseTopic(tc.pattern)
		if err == nil {
			t.Errorf("ParseTopic(%q): expected an error", tc.pattern)
			continue
		}
		if !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("ParseTopic(%q): error %q does not mention %q", tc.pattern, err, tc.errHas)
		}
	}
}

func TestValidType(t *testing.T) {
	types := []struct {
		in   string
		want bool
	}{
		{"a", true},
		{"task.finished", true},
		{"AZaz09._-:/", true},
		{"github.pull_request/opened", true},
		{strings.Repeat("t", 200), true},
		{strings.Repeat("t", 201), false},
		{"", false},
		{"a b", false},
		{"a*", false},
		{"a+b", false},
		{"a\x00", false},
		{"tâsk", false},
		{"a\nb", false},
		{"a{b}", false},
	}
	for _, tc := range types {
		if got := ValidType(tc.in); got != tc.want {
			t.Errorf("ValidType(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// matchReference is the plain recursive matcher (exponential on many
// `**`, but obviously right) that FuzzTopicMatch checks matchSegments
// against.
func matchReference(pat []string, t []string) bool {
	if len(pat) == 0 {
		return len(t) == 0
	}
	switch pat[0] {
	case "**":
		for k := 0; k <= len(t); k++ {
			if matchReference(pat[1:], t[k:]) {
				return true
			}
		}
		return false
	case "*":
		return len(t) > 0 && matchReference(pat[1:], t[1:])
	}
	return len(t) > 0 && pat[0] == t[0] && matchReference(pat[1:], t[1:])
}

// A sender chooses the event type; patterns with many `**` against a
// long type used to backtrack exponentially (seconds for five `**` and a
// 100-segment type, minutes for six) inside the ingest request. These
// finish at once now; the package's test timeout catches a regression.
func TestTopicMatchManyWildcardsIsLinear(t *testing.T) {
	long := strings.Repeat("a.", 199) // 199 segments
	tests := []struct {
		pattern, typ string
		want         bool
	}{
		{"**.**.**.**.**.**.**.x", long + "y", false},
		{"**.**.**.**.**.**.**.x", long + "x", true},
		{"**.a.**.a.**.a.**.a.**.x", long + "y", false},
		{"**.*.**.*.**.*.**.*.**.*.**.x", long + "x", true},
		{"a.**.**.**.**.**.**.**.**.b.**", long + "y", false},
	}
	for _, tc := range tests {
		p, err := ParseTopic(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Match(tc.typ); got != tc.want {
			t.Errorf("%s against %d segments: %v, want %v", tc.pattern, strings.Count(tc.typ, ".")+1, got, tc.want)
		}
	}
}

// FuzzTopicMatch checks the matcher against matchReference on small
// patterns and types. Both are built from the fuzzer's bytes over a tiny
// alphabet so that matches are common: in the pattern, '*' is a `*`
// segment and '+' a `**` one; every other byte picks a segment (a, b or
// empty).
func FuzzTopicMatch(f *testing.F) {
	f.Add([]byte("+a"), []byte("aab"))
	f.Add([]byte("+*+b"), []byte("ab"))
	f.Add([]byte("a+"), []byte("a"))
	f.Add([]byte("*"), []byte(""))
	f.Add([]byte("++++x"), []byte("aaaaaaaay"))
	f.Fuzz(func(t *testing.T, pb, tb []byte) {
		if len(pb) == 0 || len(pb) > 12 || len(tb) == 0 || len(tb) > 16 {
			return
		}
		seg := func(c byte) string { return [...]string{"a", "b", ""}[c%3] }
		pat := make([]string, len(pb))
		for i, c := range pb {
			switch c {
			case '*':
				pat[i] = "*"
			case '+':
				pat[i] = "**"
			default:
				pat[i] = seg(c)
			}
		}
		typ := make([]string, len(tb))
		for i, c := range tb {
			typ[i] = seg(c)
		}
		want := matchReference(pat, typ)
		if got := matchSegments(pat, strings.Join(typ, ".")); got != want {
			t.Fatalf("pattern %q against %q: %v, want %v", strings.Join(pat, "."), strings.Join(typ, "."), got, want)
		}
	})
}
