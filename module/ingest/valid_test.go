package ingest

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

var validSeeds = []string{
	``, ` `, `{}`, `[]`, `[ ]`, `{ }`, `null`, `true`, `false`, `nul`, `tru`, `falsey`,
	`0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e`, `1e+`, `1E-7`, `-12.5e+3`, `[01]`, `[1,]`, `[,1]`,
	`"a"`, `"\u00e9"`, `"\u00g9"`, `"\x"`, `"\"`, `"a` + "\x01" + `"`, "\"\xff\xfe\"", `"\/\b\f\n\r\t\\\""`,
	`{"a":1}`, `{"a" : [1, {"b": null}], "c": "d"}`, `{"a"}`, `{"a":}`, `{a:1}`, `{"a":1,}`, `{,"a":1}`,
	`{"a":1}{}`, `[1] x`, " \t\r\n[1]\n", `[[[]]]`, `[[[]]`, `{"a":{"b":{"c":[]}}}`,
	`[{"type":"t","data":{"x":[1,2,{"y":"z"}]},"id":"e1"}]`,
}

func TestValidJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range validSeeds {
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("validJSON(%q) = %v, json.Valid says %v", s, got, want)
		}
	}
	// Nesting: encoding/json refuses more than 10,000 levels.
	for _, depth := range []int{maxDepth, maxDepth + 1} {
		b := []byte(strings.Repeat("[", depth) + strings.Repeat("]", depth))
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Errorf("depth %d: validJSON %v, json.Valid %v", depth, got, want)
		}
	}
}

func FuzzValidJSONMatchesEncodingJSON(f *testing.F) {
	for _, s := range validSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}

// BenchmarkValidJSON: a batch of 100 1 KB events, as the load harness
// posts them.
func BenchmarkValidJSON(b *testing.B) {
	ev := `{"type":"load.batch","id":"evt_0000000000","data":{"pad":"` + strings.Repeat("x", 960) + `","n":1}}`
	body := batchOf(ev, 100)
	for _, v := range []struct {
		name string
		fn   func([]byte) bool
	}{{"encoding-json", json.Valid}, {"validJSON", validJSON}} {
		b.Run(v.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if !v.fn(body) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

// specialInWord answers what a byte loop answers: for every byte value at
// every position among plain bytes, and for random words.
func TestSpecialInWord(t *testing.T) {
	naive := func(x uint64) bool {
		for i := 0; i < 8; i++ {
			c := byte(x >> (8 * i))
			if c == '"' || c == '\\' || c < 0x20 {
				return true
			}
		}
		return false
	}
	check := func(x uint64) {
		if got, want := specialInWord(x), naive(x); got != want {
			t.Fatalf("specialInWord(%#016x) = %v, want %v", x, got, want)
		}
	}
	for _, fill := range []byte{'a', 0x20, 0x7f, 0x80, 0xff, '"' + 1, '\\' + 1, '\\' - 1} {
		for pos := 0; pos < 8; pos++ {
			for c := 0; c < 256; c++ {
				var x uint64
				for i := 0; i < 8; i++ {
					b := fill
					if i == pos {
						b = byte(c)
					}
					x |= uint64(b) << (8 * i)
				}
				check(x)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1_000_000; i++ {
		check(r.Uint64())
	}
}

// batchOf is a JSON array of n copies of the event ev.
func batchOf(ev string, n int) []byte {
	return []byte("[" + strings.TrimSuffix(strings.Repeat(ev+",", n), ",") + "]")
}
