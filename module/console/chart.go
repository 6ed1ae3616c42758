package console

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hookgate/hookgate/module"
)

// The overview's charts are drawn here as SVG shapes that the template
// writes out: no script, no image requests, and readable without colour
// (every bar and line has a title, the chart a text summary).

// Chart geometry, in viewBox units.
const (
	chartW   = 300.0
	chartH   = 92.0
	plotTop  = 16.0 // room for the top label and the legend
	plotBot  = 76.0 // room below for the time axis labels
	plotLeft = 0.0
)

// chart is one small chart.
type chart struct {
	W, H   float64
	Bars   []bar
	Lines  []line
	Top    string // the value at the top of the plot
	Empty  bool   // nothing happened in the hour
	Legend []legend
	// BaseY is the plot's baseline.
	BaseY float64
}

type bar struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type line struct {
	Points string
	Class  string
}

type legend struct{ Class, Text string }

// countChart stacks each minute's delivered and failed attempts.
func countChart(hist []module.MinuteStats) chart {
	c := chart{W: chartW, H: chartH, BaseY: plotBot,
		Legend: []legend{{"ok", "delivered"}, {"bad", "failed"}}}
	peak := 0
	for _, m := range hist {
		peak = max(peak, m.Delivered+m.Failed)
	}
	if peak == 0 {
		c.Empty, c.Top = true, "0"
		return c
	}
	top := niceCeil(float64(peak))
	c.Top = strconv.FormatFloat(top, 'f', -1, 64) + "/min"
	slot := chartW / float64(len(hist))
	scale := (plotBot - plotTop) / top
	for i, m := range hist {
		x := plotLeft + float64(i)*slot
		title := fmt.Sprintf("%s: %d delivered, %d failed", m.Start.UTC().Format("15:04"), m.Delivered, m.Failed)
		y := plotBot
		if m.Delivered > 0 {
			hgt := float64(m.Delivered) * scale
			y -= hgt
			c.Bars = append(c.Bars, bar{X: round1(x), Y: round1(y), W: round1(slot * 0.8), H: round1(hgt), Class: "ok", Title: title})
		}
		if m.Failed > 0 {
			hgt := float64(m.Failed) * scale
			y -= hgt
			c.Bars = append(c.Bars, bar{X: round1(x), Y: round1(y), W: round1(slot * 0.8), H: round1(hgt), Class: "bad", Title: title})
		}
	}
	return c
}

// latencyChart draws each minute's p50 and p99.
func latencyChart(hist []module.MinuteStats) chart {
	c := chart{W: chartW, H: chartH, BaseY: plotBot,
		Legend: []legend{{"p50", "p50"}, {"p99", "p99"}}}
	var peak time.Duration
	for _, m := range hist {
		peak = max(peak, m.P99)
	}
	if peak == 0 {
		c.Empty, c.Top = true, "0"
		return c
	}
	top := niceCeil(float64(peak) / float64(time.Millisecond))
	c.Top = strconv.FormatFloat(top, 'f', -1, 64) + " ms"
	slot := chartW / float64(len(hist))
	scale := (plotBot - plotTop) / top
	for _, q := range []struct {
		class string
		of    func(module.MinuteStats) time.Duration
	}{
		{"p50", func(m module.MinuteStats) time.Duration { return m.P50 }},
		{"p99", func(m module.MinuteStats) time.Duration { return m.P99 }},
	} {
		// A step line: each minute with attempts is a level across its
		// slot, joined to the next; a gap ends the line.
		var pts []string
		flush := func() {
			if len(pts) > 0 {
				c.Lines = append(c.Lines, line{Points: strings.Join(pts, " "), Class: q.class})
			}
			pts = nil
		}
		for i, m := range hist {
			if m.Delivered+m.Failed == 0 {
				flush()
				continue
			}
			ms := float64(q.of(m)) / float64(time.Millisecond)
			x := plotLeft + float64(i)*slot
			y := max(plotBot-ms*scale, plotTop)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f %.1f,%.1f", x, y, x+slot, y))
		}
		flush()
	}
	for i, m := range hist {
		if m.Delivered+m.Failed == 0 {
			continue
		}
		// Invisible bars carry each minute's figures as a tooltip.
		c.Bars = append(c.Bars, bar{X: round1(plotLeft + float64(i)*slot), Y: plotTop, W: round1(slot), H: plotBot - plotTop, Class: "hit",
			Title: fmt.Sprintf("%s: p50 %s, p99 %s", m.Start.UTC().Format("15:04"), fmtDur(m.P50), fmtDur(m.P99))})
	}
	return c
}

// hourSummary is the last hour in words.
func hourSummary(hist []module.MinuteStats) string {
	var ok, bad, dead int
	var p99 time.Duration
	for _, m := range hist {
		ok, bad, dead = ok+m.Delivered, bad+m.Failed, dead+m.Dead
		p99 = max(p99, m.P99)
	}
	if ok+bad == 0 {
		return "No attempts in the last hour on this node."
	}
	return fmt.Sprintf("Last hour on this node: %d delivered, %d failed attempts (%d dead); slowest minute's p99 %s.", ok, bad, dead, fmtDur(p99))
}

func fmtDur(d time.Duration) string {
	if d < time.Second {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s"
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := 1.0
	for p*10 <= v {
		p *= 10
	}
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func round1(v float64) float64 {
	return float64(int(v*10+0.5)) / 10
}
