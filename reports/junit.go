package reports

import (
	"encoding/xml"
	"fmt"
	"sort"
	"strings"
)

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Body    string `xml:",chardata"`
}

// JUnit renders the run as JUnit XML: one suite per run (named by its labels), a test
// case per check and one per negative control.
func (r *Report) JUnit() ([]byte, error) {
	s := junitSuite{Name: r.suiteName(), Time: fmt.Sprintf("%.1f", r.FinishedAt.Sub(r.StartedAt).Seconds())}
	for _, c := range r.Checks {
		tc := junitCase{Name: c.Name, Classname: "v6lab." + r.suiteName(), SystemOut: figures(c)}
		switch c.Status {
		case Fail:
			tc.Failure = &junitMessage{Message: c.Reason, Body: evidenceText(c)}
		case Skip:
			tc.Skipped = &junitMessage{Message: c.Reason}
		}
		s.Cases = append(s.Cases, tc)
		if c.Control != nil {
			cc := junitCase{Name: c.Name + "/negative-control", Classname: tc.Classname}
			switch {
			case c.Control.Status == Inconclusive:
				cc.Failure = &junitMessage{Message: "the negative control (" + c.Control.Breakage + ") was inconclusive: expected failure " +
					c.Control.Expected + ", observed " + fmt.Sprint(c.Control.Observed), Body: c.Control.Reason}
			case c.Control.Status != Fail:
				cc.Failure = &junitMessage{Message: "the check did not fail on a lab broken on purpose (" + c.Control.Breakage + "): it cannot detect what it claims to",
					Body: c.Control.Reason}
			case c.Control.RestoreError != "":
				cc.Failure = &junitMessage{Message: "the lab was not restored after the negative control", Body: c.Control.RestoreError}
			}
			s.Cases = append(s.Cases, cc)
		}
	}
	for _, tc := range s.Cases {
		s.Tests++
		if tc.Failure != nil {
			s.Failures++
		}
		if tc.Skipped != nil {
			s.Skipped++
		}
	}
	out, err := xml.MarshalIndent(junitSuites{Suites: []junitSuite{s}}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}

func (r *Report) suiteName() string {
	keys := make([]string, 0, len(r.Labels))
	for k := range r.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := []string{r.Lab}
	for _, k := range keys {
		parts = append(parts, k+"="+r.Labels[k])
	}
	return strings.Join(parts, ",")
}

func figures(c Check) string {
	keys := make([]string, 0, len(c.Figures))
	for k := range c.Figures {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%g\n", k, c.Figures[k])
	}
	return b.String()
}

func evidenceText(c Check) string {
	var b strings.Builder
	for _, e := range c.Evidence {
		fmt.Fprintf(&b, "%s frame %d %s -> %s: %s\n", e.File, e.Frame, e.Src, e.Dst, e.Note)
	}
	return b.String()
}
