package reports

import (
	"sort"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/human"
)

// Human formats a duration for people: 850ms, 7.6s, 4m46s, 1h02m.
func Human(d time.Duration) string { return human.Duration(d) }

// HumanMs formats a figure in milliseconds as Human does.
func HumanMs(ms float64) string { return Human(time.Duration(ms * float64(time.Millisecond))) }

// Headline is the figure of a check that matters, in one line: for the failover check
// each failure's outage against its budget (configuration), else the check's reason
// when it failed.
func (c Check) Headline() string {
	if c.Status == Fail || c.Status == Inconclusive {
		return firstLineOf(c.Reason)
	}
	var parts []string
	for _, name := range sortedKeys(c.Figures) {
		what, ok := strings.CutPrefix(name, "outage_ms_")
		if !ok {
			continue
		}
		p := what + " " + HumanMs(c.Figures[name])
		if b, ok := c.Config["budget_ms_"+what]; ok {
			p += " (budget " + HumanMs(b) + ")"
		}
		parts = append(parts, p)
	}
	if len(parts) > 0 {
		return strings.Join(parts, ", ")
	}
	if c.Reason == "ok" {
		return ""
	}
	return firstLineOf(c.Reason)
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

func sortedKeys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
