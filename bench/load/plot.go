package main

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Colours per target, the same in every plot.
var targetColors = map[string]color.RGBA{
	"wsbridge":   {R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	"centrifugo": {R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	"gorilla":    {R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff},
}

// writePlots draws, for the run: the latency CDF of each scenario (one line
// per target), deliveries per second over time and RSS over time (one line
// per target, time from the target's start).
func writePlots(r *results, dir string, formats []string) error {
	save := func(p *plot.Plot, name string) error {
		for _, f := range formats {
			f = strings.TrimSpace(f)
			if err := p.Save(8*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, name+"."+f)); err != nil {
				return err
			}
		}
		return nil
	}
	// Scenario names in order of the first target that has them.
	var names []string
	seen := map[string]bool{}
	for _, t := range r.Targets {
		for _, s := range t.Scenarios {
			if !seen[s.Name] {
				seen[s.Name] = true
				names = append(names, s.Name)
			}
		}
	}
	for i, name := range names {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("Latency CDF: %s to %d connections (%d-byte payload)", name, r.Conns, r.Payload)
		p.X.Label.Text = "latency, send to receive (ms, log scale)"
		p.Y.Label.Text = "fraction of deliveries"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = 0, 1
		p.Add(plotter.NewGrid())
		for _, t := range r.Targets {
			for _, s := range t.Scenarios {
				if s.Name != name {
					continue
				}
				pts := cdfPoints(s.Latency)
				if len(pts) == 0 {
					continue
				}
				if err := addLine(p, t.Name, pts); err != nil {
					return err
				}
			}
		}
		p.Legend.Top, p.Legend.Left = false, true
		p.Legend.YOffs = 0
		if err := save(p, fmt.Sprintf("latency-cdf-%d", i+1)); err != nil {
			return err
		}
	}

	rate := plot.New()
	rate.Title.Text = fmt.Sprintf("Deliveries per second, %d connections (every scenario in turn)", r.Conns)
	rate.X.Label.Text = "seconds since the server started"
	rate.Y.Label.Text = "deliveries/s (100 ms steps)"
	rate.Add(plotter.NewGrid())
	rss := plot.New()
	rss.Title.Text = fmt.Sprintf("Server RSS, %d connections", r.Conns)
	rss.X.Label.Text = "seconds since the server started"
	rss.Y.Label.Text = "RSS (MiB)"
	rss.Add(plotter.NewGrid())
	for _, t := range r.Targets {
		var rp, mp plotter.XYs
		for i, s := range t.Series {
			mp = append(mp, plotter.XY{X: s.T, Y: mib(s.RSS)})
			if i > 0 {
				prev := t.Series[i-1]
				if dt := s.T - prev.T; dt > 0 {
					rp = append(rp, plotter.XY{X: s.T, Y: float64(s.Delivered-prev.Delivered) / dt})
				}
			}
		}
		if len(rp) > 0 {
			if err := addLine(rate, t.Name, rp); err != nil {
				return err
			}
		}
		if len(mp) > 0 {
			if err := addLine(rss, t.Name, mp); err != nil {
				return err
			}
		}
	}
	rss.Y.Min = 0
	rate.Y.Min = 0
	rss.Legend.Top, rss.Legend.Left = true, true
	rate.Legend.Top = true
	if err := save(rate, "deliveries-per-sec"); err != nil {
		return err
	}
	if err := save(rss, "rss"); err != nil {
		return err
	}
	return writeNodePlot(r, save)
}

// nodeColors tell the nodes of a cluster apart.
var nodeColors = []color.RGBA{
	{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, {R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, {R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, {R: 0x8c, G: 0x56, B: 0x4b, A: 0xff}, {R: 0xe3, G: 0x77, B: 0xc2, A: 0xff},
}

// writeNodePlot draws each node's RSS over time (rss-nodes), for a target
// run as a cluster (-nodes > 1).
func writeNodePlot(r *results, save func(*plot.Plot, string) error) error {
	for _, t := range r.Targets {
		if len(t.Nodes) == 0 && (len(t.Series) == 0 || len(t.Series[0].NodeRSS) == 0) {
			continue
		}
		p := plot.New()
		p.Title.Text = fmt.Sprintf("RSS of each node, %d nodes × %d connections", r.Nodes, r.Conns/max(r.Nodes, 1))
		p.X.Label.Text = "seconds since the nodes started"
		p.Y.Label.Text = "RSS (MiB)"
		p.Add(plotter.NewGrid())
		nodes := 0
		for _, s := range t.Series {
			nodes = max(nodes, len(s.NodeRSS))
		}
		for k := range nodes {
			var pts plotter.XYs
			for _, s := range t.Series {
				if k < len(s.NodeRSS) {
					pts = append(pts, plotter.XY{X: s.T, Y: mib(s.NodeRSS[k])})
				}
			}
			l, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			l.LineStyle.Width = vg.Points(1.5)
			l.LineStyle.Color = nodeColors[k%len(nodeColors)]
			p.Add(l)
			p.Legend.Add(fmt.Sprintf("%s node %d", t.Name, k+1), l)
		}
		p.Y.Min = 0
		p.Legend.Top, p.Legend.Left = false, true
		return save(p, "rss-nodes")
	}
	return nil
}

func addLine(p *plot.Plot, name string, pts plotter.XYs) error {
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	l.LineStyle.Width = vg.Points(1.5)
	if c, ok := targetColors[name]; ok {
		l.LineStyle.Color = c
	}
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// cdfPoints turns histogram counts into (upper bound in ms, cumulative
// fraction) steps.
func cdfPoints(h []uint64) plotter.XYs {
	total := histCounts(h).total()
	if total == 0 {
		return nil
	}
	var pts plotter.XYs
	var run uint64
	for b, n := range h {
		if n == 0 {
			continue
		}
		lo := 0.001
		if b > 0 {
			lo = ms(bucketUpper(b - 1))
		}
		if len(pts) == 0 {
			pts = append(pts, plotter.XY{X: math.Max(lo, 0.001), Y: 0})
		}
		run += n
		pts = append(pts, plotter.XY{X: ms(bucketUpper(b)), Y: float64(run) / float64(total)})
	}
	return pts
}
