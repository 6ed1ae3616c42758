package integration

import "fmt"

// loadTargets are the settings of a run that the throughput and footprint
// targets are stated at, for the targets block that ends the report.
type loadTargets struct {
	rate, natsRate int // phase 5's events/s on Badger and on NATS (0: not run)
	backlog        int // phase 6's pending deliveries (0: not run)
	disk           int // phase 7's events (0: not run)
}

// Conditions the targets are stated at.
const (
	targetRate    = 2000      // events/s of the end-to-end latency target
	targetBacklog = 1_000_000 // pending deliveries of the memory and restart targets
)

// target is one target: a bound on the metric of this run named key
// (plus the one named plus, if any), in the target's unit after scale.
type target struct {
	name   string
	key    string
	plus   string
	scale  float64
	limit  float64
	atMost bool   // the value must be ≤ limit; otherwise ≥
	format string // of the scaled value, with its unit
	// judge says why the value is not at the target's conditions (the
	// value is shown, not judged); empty: it is.
	judge string
	// more is appended to the value (conditions it was measured at).
	more string
}

// report ends the report with each target beside this run's figure and
// whether it is met. The figures are this run's; nothing is asserted.
func (tg loadTargets) report(r *loadReport, badger, nats bool) {
	const p = "targets"
	mbPerMiB := 1.048576 // targets in MB and GB are decimal
	var ts []target
	if badger {
		ts = append(ts,
			target{name: "Badger: sustained ingest+delivery ≥ 0.85 × pass-through (2b / 2a)", key: "mixed_of_passthrough",
				scale: 1, limit: 0.85, format: "%.3f"},
			target{name: "Badger: CPU per event ingested and delivered ≤ 0.12 ms (2b, Caddy child)", key: "mixed_caddy_cpu_ms",
				scale: 1, limit: 0.12, atMost: true, format: "%.3f ms"},
			target{name: "Badger: anonymous memory with 1,000,000 pending ≤ 256 MB (6)", key: "backlog_pending_anon_MiB",
				scale: mbPerMiB, limit: 256, atMost: true, format: "%.0f MB", judge: tg.backlogJudge()},
			target{name: "Badger: VmRSS with 1,000,000 pending ≤ 1 GB (6)", key: "backlog_pending_rss_MiB",
				scale: mbPerMiB / 1000, limit: 1, atMost: true, format: "%.2f GB", judge: tg.backlogJudge()},
			target{name: "Badger: restart to first delivery with 1,000,000 pending ≤ 1.5 s (6)", key: "backlog_first_delivery_s",
				scale: 1, limit: 1.5, atMost: true, format: "%.2f s", judge: tg.backlogJudge()},
			target{name: "Badger: disk per retained delivered 1 KiB event ≤ 2 KiB (7, allocated, after settling)", key: "disk_KiB/ev",
				scale: 1, limit: 2, atMost: true, format: "%.2f KiB", more: tg.diskMore(r)},
			target{name: "Badger: batched ingest ≥ 60,000 events/s (3, batches of 100)", key: "batch100_ev/s",
				scale: 1, limit: 60_000, format: "%.0f events/s"},
			tg.e2e(r, "Badger", "", tg.rate),
		)
	}
	if nats {
		ts = append(ts,
			target{name: "NATS: sustained ingest+delivery ≥ 0.85 × pass-through (NATS 2b / 2a)", key: "nats_mixed_of_passthrough",
				scale: 1, limit: 0.85, format: "%.3f"},
			target{name: "NATS: CPU per event ingested and delivered ≤ 0.12 ms (2b, Caddy child + 3 servers)", key: "nats_mixed_caddy_cpu_ms",
				plus: "nats_mixed_nats_cpu_ms", scale: 1, limit: 0.12, atMost: true, format: "%.3f ms"},
			target{name: "NATS: batched ingest ≥ 60,000 events/s (3, batches of 100)", key: "nats_batch100_ev/s",
				scale: 1, limit: 60_000, format: "%.0f events/s"},
			tg.e2e(r, "NATS", "nats_", tg.natsRate),
		)
	}
	for _, t := range ts {
		r.note(p, t.name, t.value(r))
	}
}

// value is the target's line: the figure, and met / not met.
func (t target) value(r *loadReport) string {
	v, ok := r.get(t.key)
	if t.plus != "" {
		w, ok2 := r.get(t.plus)
		v, ok = v+w, ok && ok2
	}
	if !ok {
		return "not measured in this run"
	}
	s := fmt.Sprintf(t.format, v*t.scale) + t.more
	switch {
	case t.judge != "":
		return s + " — not judged: " + t.judge
	case t.atMost && v*t.scale <= t.limit, !t.atMost && v*t.scale >= t.limit:
		return s + " — met"
	default:
		return s + " — not met"
	}
}

func (tg loadTargets) backlogJudge() string {
	if tg.backlog == targetBacklog {
		return ""
	}
	return fmt.Sprintf("measured with %d pending (HOOKGATE_LOAD_BACKLOG)", tg.backlog)
}

// diskMore notes how many value-log GC runs phase 7's outbox had made.
func (tg loadTargets) diskMore(r *loadReport) string {
	n, ok := r.get("disk_gc_intervals")
	if !ok {
		return ""
	}
	return fmt.Sprintf(" (%d events; value-log GC runs by then: %.0f)", tg.disk, n)
}

// e2e is the end-to-end latency target of one backend, run at rate
// events/s (metric keys with prefix).
func (tg loadTargets) e2e(r *loadReport, name, prefix string, rate int) target {
	t := target{name: name + ": end-to-end p99 ≤ 20 ms at a steady 2,000 events/s (5)", key: prefix + "e2e_p99_ms",
		scale: 1, limit: 20, atMost: true, format: "%.2f ms"}
	got, ok := r.get(prefix + "e2e_ev/s")
	if ok {
		t.more = fmt.Sprintf(" (%.0f events/s achieved)", got)
	}
	switch {
	case rate != targetRate:
		t.judge = fmt.Sprintf("run at %d events/s", rate)
	case ok && got < 0.95*targetRate:
		t.judge = "the pacer fell short of 2,000 events/s"
	}
	return t
}
