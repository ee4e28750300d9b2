package reports

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"math"
	"sort"
	"strings"
	"time"
)

//go:embed templates/report.html.tmpl
var tmplFS embed.FS

var page = template.Must(template.New("report.html.tmpl").Funcs(template.FuncMap{
	"topology":  topologySVG,
	"timeline":  timelineSVG,
	"figures":   sortedFigures,
	"effective": func(c Check) Status { return c.Effective() },
	"ts":        func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
	"human":     Human,
	"seconds":   func(s float64) string { return Human(time.Duration(s * float64(time.Second))) },
	"headline":  func(c Check) string { return c.Headline() },
	"failed":    failedChecks,
	"hubble":    hubbleSection,
}).ParseFS(tmplFS, "templates/report.html.tmpl"))

// HTML renders the report for people: verdicts, the topology, the address plan, each
// check with its evidence, and failover timelines drawn as SVG.
func (r *Report) HTML() ([]byte, error) {
	pass, fail, skip := r.Counts()
	var b bytes.Buffer
	err := page.Execute(&b, map[string]any{"R": r, "Pass": pass, "Fail": fail, "Skip": skip, "Suite": r.suiteName()})
	return b.Bytes(), err
}

// failedChecks are the checks the run fails on: a check that failed, or a negative
// control that did not fail for its declared reason, or a lab left unrestored.
func failedChecks(r *Report) []Check {
	var out []Check
	for _, c := range r.Checks {
		if e := c.Effective(); e == Fail || e == Inconclusive {
			out = append(out, c)
		}
	}
	return out
}

// hubbleRow is one disagreement of the report's Hubble section, with its check.
type hubbleRow struct {
	Check string
	Disagreement
}

// hubbleReport is what the report's "Hubble and the wire" section shows: the checks
// that set Hubble's flows against the capture, and every disagreement they found.
type hubbleReport struct {
	Compared []string
	Rows     []hubbleRow
}

func hubbleSection(r *Report) hubbleReport {
	var h hubbleReport
	for _, c := range r.Checks {
		if c.Status == Skip {
			continue
		}
		if _, ok := c.Figures[HubbleFlowsFigure]; ok || len(c.Disagreements) > 0 {
			h.Compared = append(h.Compared, c.Name)
		}
		for _, d := range c.Disagreements {
			h.Rows = append(h.Rows, hubbleRow{c.Name, d})
		}
	}
	return h
}

// HubbleFlowsFigure is the figure a check that compared Hubble with the wire records:
// how many flows Hubble gave it.
const HubbleFlowsFigure = "hubble_flows"

type figure struct {
	Name  string
	Value float64
}

func sortedFigures(m map[string]float64) []figure {
	out := make([]figure, 0, len(m))
	for k, v := range m {
		out = append(out, figure{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// topologySVG draws members in three rows (hosts, routers, nodes) with their links.
func topologySVG(t *Topology) template.HTML {
	if t == nil || len(t.Members) == 0 {
		return ""
	}
	rows := map[string][]Member{}
	for _, m := range t.Members {
		rows[m.Kind] = append(rows[m.Kind], m)
	}
	order := []string{"host", "router", "node"}
	const w, h, boxW, boxH = 900.0, 330.0, 150.0, 46.0
	pos := map[string][2]float64{}
	for ri, kind := range order {
		ms := rows[kind]
		for i, m := range ms {
			x := (float64(i) + 0.5) * w / float64(len(ms))
			y := 40 + float64(ri)*120
			pos[m.Name] = [2]float64{x, y}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" width="100%%" role="img" aria-label="lab topology">`, w, h)
	for _, l := range t.Links {
		a, okA := pos[l[0]]
		c, okC := pos[l[1]]
		if okA && okC {
			fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" class="link"/>`, a[0], a[1]+boxH/2, c[0], c[1]+boxH/2)
		}
	}
	for _, m := range t.Members {
		p := pos[m.Name]
		fmt.Fprintf(&b, `<g class="%s"><rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" rx="6"/>`, template.HTMLEscapeString(m.Kind), p[0]-boxW/2, p[1], boxW, boxH)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="name">%s</text>`, p[0], p[1]+19, template.HTMLEscapeString(m.Name))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="addr">%s</text></g>`, p[0], p[1]+36, template.HTMLEscapeString(m.Addr))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// timelineSVG draws a failover timeline: points and spans (loss windows) on a time axis;
// events with lanes as one row per lane (lanesSVG).
func timelineSVG(events []Event) template.HTML {
	if len(events) == 0 {
		return ""
	}
	for _, e := range events {
		if e.Lane != "" {
			return lanesSVG(events)
		}
	}
	start, end := timeBounds(events)
	span := end.Sub(start).Seconds()
	if span <= 0 {
		span = 1
	}
	const w, left, right = 900.0, 20.0, 20.0
	x := func(t time.Time) float64 { return left + (w-left-right)*t.Sub(start).Seconds()/span }
	h := 50 + 22*float64(len(events))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" width="100%%" role="img" aria-label="timeline">`, w, h)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="30" x2="%.0f" y2="30" class="axis"/>`, left, w-right)
	fmt.Fprintf(&b, `<text x="%.0f" y="20" class="tick">0 ms</text><text x="%.0f" y="20" class="tick" text-anchor="end">%.0f ms</text>`,
		left, w-right, math.Round(span*1000))
	for i, e := range events {
		y := 50 + 22*float64(i)
		if e.Until.IsZero() {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="30" x2="%.1f" y2="%.0f" class="mark"/>`, x(e.At), x(e.At), y)
		} else {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.0f" width="%.1f" height="12" class="span"/>`, x(e.At), y-10, math.Max(1, x(e.Until)-x(e.At)))
		}
		label := e.Label
		if !e.Until.IsZero() {
			label += fmt.Sprintf(" (%.0f ms)", e.Until.Sub(e.At).Seconds()*1000)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" class="label">%s</text>`, math.Min(x(e.At)+4, w-300), y, template.HTMLEscapeString(label))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// timeBounds is the first moment of the events and the last one (a span's end included).
func timeBounds(events []Event) (start, end time.Time) {
	start, end = events[0].At, events[0].At
	for _, e := range events {
		if e.At.Before(start) {
			start = e.At
		}
		last := e.At
		if !e.Until.IsZero() {
			last = e.Until
		}
		if last.After(end) {
			end = last
		}
	}
	return start, end
}

// lanesSVG draws a timeline with one row per lane, in the order the lanes first appear
// (e.g. each agent's restart, then each flow's outages, stalls and resets): spans as
// bars with their duration, points as ticks, and events without a lane as numbered
// vertical marks across every row, listed under the drawing with their time.
func lanesSVG(events []Event) template.HTML {
	start, end := timeBounds(events)
	var lanes []string
	row := map[string]int{}
	for _, e := range events {
		if _, ok := row[e.Lane]; e.Lane != "" && !ok {
			row[e.Lane] = len(lanes)
			lanes = append(lanes, e.Lane)
		}
	}
	// The restarting components' rows first (by name), then the rest as they came.
	restart := map[string]bool{}
	for _, e := range events {
		if e.Kind == "restart" {
			restart[e.Lane] = true
		}
	}
	sort.SliceStable(lanes, func(i, j int) bool {
		if restart[lanes[i]] != restart[lanes[j]] {
			return restart[lanes[i]]
		}
		if restart[lanes[i]] {
			return lanes[i] < lanes[j]
		}
		return false
	})
	for i, l := range lanes {
		row[l] = i
	}
	// A flow's own bar under what happened to it.
	events = append([]Event(nil), events...)
	sort.SliceStable(events, func(i, j int) bool { return events[i].Kind == "flow" && events[j].Kind != "flow" })
	span := end.Sub(start).Seconds()
	if span <= 0 {
		span = 1
	}
	const w, left, right, top, laneH = 900.0, 200.0, 20.0, 34.0, 22.0
	x := func(t time.Time) float64 { return left + (w-left-right)*t.Sub(start).Seconds()/span }
	h := top + laneH*float64(len(lanes)) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" width="100%%" role="img" aria-label="timeline by lane">`, w, h)
	// Ticks: a round step giving at most ten of them.
	step := 1.0
	for _, s := range []float64{0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300} {
		step = s
		if span/s <= 10 {
			break
		}
	}
	for t := 0.0; t <= span+1e-9; t += step {
		px := left + (w-left-right)*t/span
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" class="grid"/>`, px, top-4, px, h-10)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" class="tick" text-anchor="middle">%s</text>`, px, top-8, Human(time.Duration(t*float64(time.Second))))
	}
	for i, l := range lanes {
		y := top + laneH*float64(i)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="lane">%s</text>`, left-8, y+15, template.HTMLEscapeString(l))
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" class="row"/>`, left, y+laneH, w-right, y+laneH)
	}
	var marks []Event
	for _, e := range events {
		if e.Lane == "" {
			marks = append(marks, e)
			n := len(marks)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" class="mark"><title>%s</title></line>`, x(e.At), top-2, x(e.At), h-10, template.HTMLEscapeString(e.Label))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" class="marknum">%d</text>`, x(e.At)+2, h-1, n)
			continue
		}
		y := top + laneH*float64(row[e.Lane])
		title := template.HTMLEscapeString(fmt.Sprintf("%s: %s at +%s", e.Lane, e.Label, Human(e.At.Sub(start))))
		if e.Until.IsZero() {
			fmt.Fprintf(&b, `<path d="M%.1f %.0f l5 8 l-5 8 l-5 -8 z" class="point %s"><title>%s</title></path>`, x(e.At), y+3, template.HTMLEscapeString(e.Kind), title)
			continue
		}
		d := e.Until.Sub(e.At)
		title = template.HTMLEscapeString(fmt.Sprintf("%s: %s, %s from +%s", e.Lane, e.Label, Human(d), Human(e.At.Sub(start))))
		bw := math.Max(1.5, x(e.Until)-x(e.At))
		if e.Kind == "flow" {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.0f" width="%.1f" height="4" class="bar flow"><title>%s</title></rect>`, x(e.At), y+9, bw, title)
			continue
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.0f" width="%.1f" height="14" class="bar %s"><title>%s</title></rect>`, x(e.At), y+4, bw, template.HTMLEscapeString(e.Kind), title)
		if bw > 44 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" class="dur">%s</text>`, x(e.At)+bw/2, y+15, Human(d.Round(time.Millisecond)))
		}
	}
	b.WriteString(`</svg>`)
	if len(marks) > 0 {
		b.WriteString(`<ol class="marks">`)
		for _, m := range marks {
			fmt.Fprintf(&b, `<li>+%s %s</li>`, Human(m.At.Sub(start).Round(time.Millisecond)), template.HTMLEscapeString(m.Label))
		}
		b.WriteString(`</ol>`)
	}
	return template.HTML(b.String())
}
