package ingest

import (
	"strconv"

	"github.com/hookgate/hookgate/module"
)

// answer is the body of a successful ingest: the event's id and the
// routes it matched, or a batch's ids and which were duplicates. It is
// sized up front and built in one allocation.
func answer(results []module.Accepted, isBatch bool) []byte {
	if !isBatch {
		// The single event's answer in one allocation.
		res := results[0]
		n := len(`{"id":,"routes":[]}`) + len(res.ID) + 2
		for _, name := range res.Routes {
			n += len(name) + 3
		}
		b := make([]byte, 0, n)
		b = append(b, `{"id":`...)
		b = module.AppendQuoted(b, res.ID)
		if res.Duplicate {
			return append(b, `,"duplicate":true}`...)
		}
		b = append(b, `,"routes":[`...)
		for i, name := range res.Routes {
			if i > 0 {
				b = append(b, ',')
			}
			b = module.AppendQuoted(b, name)
		}
		return append(b, "]}"...)
	}
	n := len(`{"ids":[],"duplicates":[]}`)
	for _, res := range results {
		n += len(res.ID) + 3
		if res.Duplicate {
			n += 8
		}
	}
	b := make([]byte, 0, n)
	b = append(b, `{"ids":[`...)
	dups := 0
	for i, res := range results {
		if i > 0 {
			b = append(b, ',')
		}
		b = module.AppendQuoted(b, res.ID)
		if res.Duplicate {
			dups++
		}
	}
	b = append(b, ']')
	if dups > 0 {
		b = append(b, `,"duplicates":[`...)
		first := true
		for i, res := range results {
			if !res.Duplicate {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = strconv.AppendInt(b, int64(i), 10)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}
