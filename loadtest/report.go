package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// median of one figure over a server's runs.
func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

// byServer returns the runs of server that completed.
func byServer(all []result, server string) []result {
	var rs []result
	for _, r := range all {
		if r.Server == server && r.Error == "" {
			rs = append(rs, r)
		}
	}
	return rs
}

// printTable prints the medians of each server's runs, and ginsse's
// ratios to the others.
func printTable(w io.Writer, all []result, servers []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\truns\tstreams\tconnect s\tsent/s\tdeliveries/s\tlost\tdup\tp50 ms\tp90 ms\tp99 ms\tmax ms\tKB/stream\tredis conns\t")
	for _, s := range servers {
		rs := byServer(all, s)
		if len(rs) == 0 {
			fmt.Fprintf(tw, "%s\tfailed\t\n", s)
			continue
		}
		m := func(f func(result) float64) float64 { return median(rs, f) }
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.1f\t%.1f\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t\n", s, len(rs),
			m(func(r result) float64 { return float64(r.Connected) }),
			m(func(r result) float64 { return r.ConnectSeconds }),
			m(func(r result) float64 { return r.SendRate }),
			m(func(r result) float64 { return r.DeliveriesPerSec }),
			m(func(r result) float64 { return float64(r.Lost) }),
			m(func(r result) float64 { return float64(r.Duplicates) }),
			m(func(r result) float64 { return r.P50ms }),
			m(func(r result) float64 { return r.P90ms }),
			m(func(r result) float64 { return r.P99ms }),
			m(func(r result) float64 { return r.MaxMs }),
			m(func(r result) float64 { return r.RSSPerStreamKB }),
			m(func(r result) float64 { return float64(r.RedisConnections) }))
	}
	tw.Flush()
	g := byServer(all, modeGinsse)
	if len(g) == 0 {
		return
	}
	for _, other := range servers {
		o := byServer(all, other)
		if other == modeGinsse || len(o) == 0 {
			continue
		}
		ratio := func(f func(result) float64) float64 {
			if d := median(o, f); d != 0 {
				return median(g, f) / d
			}
			return 0
		}
		fmt.Fprintf(w, "ginsse / %s: deliveries/s %.2fx, p99 %.2fx, KB/stream %.2fx\n", other,
			ratio(func(r result) float64 { return r.DeliveriesPerSec }),
			ratio(func(r result) float64 { return r.P99ms }),
			ratio(func(r result) float64 { return r.RSSPerStreamKB }))
	}
}

// writeChart draws the median deliveries/s and p99 latency of each server
// at each stream count found in JSON results files (comma separated), as
// an SVG bar chart.
func writeChart(paths string, w io.Writer) error {
	var all []result
	for _, path := range strings.Split(paths, ",") {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var rs []result
		if err := json.Unmarshal(b, &rs); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		all = append(all, rs...)
	}
	var counts []int
	for _, r := range all {
		if !slices.Contains(counts, r.Streams) {
			counts = append(counts, r.Streams)
		}
	}
	slices.Sort(counts)
	colors := map[string]string{modeGinsse: "#0ea5e9", modePerClient: "#f97316", modeMemory: "#22c55e"}
	const width, height, top, left, panelW = 760, 320, 40, 60, 320
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	panels := []struct {
		title string
		f     func(result) float64
	}{
		{"deliveries per second (higher is better)", func(r result) float64 { return r.DeliveriesPerSec }},
		{"p99 latency, ms (lower is better)", func(r result) float64 { return r.P99ms }},
	}
	for p, panel := range panels {
		x0 := left + p*(panelW+60)
		maxV := 0.0
		for _, r := range all {
			maxV = max(maxV, panel.f(r))
		}
		fmt.Fprintf(w, `<text x="%d" y="20" font-weight="bold">%s</text>`+"\n", x0, panel.title)
		groupW := panelW / max(len(counts), 1)
		barW := groupW / (len(modes) + 1)
		for gi, n := range counts {
			for mi, mode := range modes {
				var rs []result
				for _, r := range byServer(all, mode) {
					if r.Streams == n {
						rs = append(rs, r)
					}
				}
				if len(rs) == 0 || maxV == 0 {
					continue
				}
				v := median(rs, panel.f)
				h := int(v / maxV * float64(height-top-60))
				x := x0 + gi*groupW + mi*barW
				y := height - 40 - h
				fmt.Fprintf(w, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s, %d streams: %.1f</title></rect>`+"\n", x, y, barW-2, h, colors[mode], mode, n, v)
				fmt.Fprintf(w, `<text x="%d" y="%d" font-size="9" text-anchor="middle">%s</text>`+"\n", x+barW/2, y-3, short(v))
			}
			fmt.Fprintf(w, `<text x="%d" y="%d">%d streams</text>`+"\n", x0+gi*groupW, height-22, n)
		}
	}
	for i, mode := range modes {
		fmt.Fprintf(w, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			left+i*150, height-12, colors[mode], left+i*150+16, height-2, mode)
	}
	fmt.Fprintln(w, "</svg>")
	return nil
}

// short prints a bar's value in a few characters: 219632 as 220k.
func short(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.0fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}
