package main

import (
	"fmt"
	"image/color"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// palette gives each library a colour of its own.
var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, // blue
	color.RGBA{0xff, 0x7f, 0x0e, 0xff}, // orange
	color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, // green
	color.RGBA{0xd6, 0x27, 0x28, 0xff}, // red
	color.RGBA{0x94, 0x67, 0xbd, 0xff}, // purple
	color.RGBA{0x8c, 0x56, 0x4b, 0xff}, // brown
	color.RGBA{0xe3, 0x77, 0xc2, 0xff}, // pink
	color.RGBA{0x7f, 0x7f, 0x7f, 0xff}, // grey
	color.RGBA{0xbc, 0xbd, 0x22, 0xff}, // olive
	color.RGBA{0x17, 0xbe, 0xcf, 0xff}, // cyan
}

// group is one cluster of bars: a label on the X axis and a value (in
// nanoseconds) per library, zero where the library did not run.
type group struct {
	label  string
	values map[string]float64
}

// barChart draws grouped bars of nanosecond values on a log scale. The
// bars are drawn as log10(value) above a baseline, one decade below the
// smallest value, and the axis is labelled in time units, because a
// gonum bar chart starts every bar at zero, which a log scale cannot show.
//
// width is the width the chart will be saved at: the bars are sized to
// fill it.
func barChart(title, ylabel string, width vg.Length, libs []string, groups []group) (*plot.Plot, error) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, g := range groups {
		for _, v := range g.values {
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 1) {
		return nil, fmt.Errorf("%s: no values", title)
	}
	floor := math.Floor(math.Log10(lo))
	ceil := math.Ceil(math.Log10(hi))

	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Y.Min, p.Y.Max = 0, ceil-floor+0.6 // headroom for the legend
	p.Y.Tick.Marker = decadeTicks{floor: floor}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.ThumbnailWidth = vg.Points(10)
	p.Add(plotter.NewGrid())

	// Leave about an inch for the Y axis, and a fifth of each group's
	// room as a gap between groups.
	groupWidth := (width - vg.Inch) / vg.Length(len(groups)) * 0.8
	w := groupWidth / vg.Length(len(libs))
	for i, l := range libs {
		vals := make(plotter.Values, len(groups))
		for j, g := range groups {
			if v := g.values[l]; v > 0 {
				vals[j] = math.Log10(v) - floor
			}
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		bars.Color = palette[i%len(palette)]
		bars.LineStyle.Width = 0
		bars.Offset = vg.Length(float64(i)-float64(len(libs)-1)/2) * w
		p.Add(bars)
		p.Legend.Add(l, bars)
	}
	labels := make([]string, len(groups))
	for i, g := range groups {
		labels[i] = g.label
	}
	p.NominalX(labels...)
	return p, nil
}

// decadeTicks labels a log10 axis that starts at 10^floor.
type decadeTicks struct{ floor float64 }

func (d decadeTicks) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for e := math.Floor(min); e <= max; e++ {
		if e >= min {
			ts = append(ts, plot.Tick{Value: e, Label: fmtNs(math.Pow(10, e+d.floor))})
		}
		for m := 2; m < 10; m++ {
			v := e + math.Log10(float64(m))
			if v >= min && v <= max {
				ts = append(ts, plot.Tick{Value: v})
			}
		}
	}
	return ts
}

// throughputChart draws ns/task per library for every throughput workload.
func throughputChart(res *results) (*plot.Plot, error) {
	ws := res.workloadsOf(kindThroughput)
	var libs []string
	for _, l := range res.libs {
		for _, w := range ws {
			if res.get(w, l, unitNsTask).ok() {
				libs = append(libs, l)
				break
			}
		}
	}
	groups := make([]group, len(ws))
	for i, w := range ws {
		groups[i] = group{label: shortLabel(w), values: map[string]float64{}}
		for _, l := range libs {
			if s := res.get(w, l, unitNsTask); s.ok() {
				groups[i].values[l] = s.median
			}
		}
	}
	return barChart("ns per task, median of the rounds (lower is better; log scale)", "ns/task", throughputWidth, libs, groups)
}

// latencyChart draws p50 and p99 submit-to-start latency per library.
func latencyChart(res *results) (*plot.Plot, error) {
	ws := res.workloadsOf(kindLatency)
	var libs []string
	for _, l := range res.libs {
		for _, w := range ws {
			if res.get(w, l, unitP50).ok() {
				libs = append(libs, l)
				break
			}
		}
	}
	var groups []group
	for _, w := range ws {
		for _, unit := range []string{unitP50, unitP99} {
			g := group{label: strings.TrimPrefix(shortLabel(w), "Latency ") + " " + unit[:3], values: map[string]float64{}}
			for _, l := range libs {
				if s := res.get(w, l, unit); s.ok() {
					g.values[l] = s.median
				}
			}
			groups = append(groups, g)
		}
	}
	return barChart("submit-to-start latency, median of the rounds (lower is better; log scale)", "latency", latencyWidth, libs, groups)
}

// Chart sizes.
const (
	throughputWidth  = 16 * vg.Inch
	throughputHeight = 6 * vg.Inch
	latencyWidth     = 10 * vg.Inch
	latencyHeight    = 5 * vg.Inch
)

// shortLabel shortens a workload's name to fit under its bars.
func shortLabel(w string) string {
	return strings.NewReplacer(
		"ParallelSubmit", "Parallel",
		"workers=", "w=",
		"producers=", "p=",
		"/", " ",
	).Replace(w)
}

// save writes p to each of files; the extension picks the format.
func save(p *plot.Plot, w, h vg.Length, files ...string) error {
	for _, f := range files {
		if err := p.Save(w, h, f); err != nil {
			return err
		}
	}
	return nil
}
