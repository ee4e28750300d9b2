package spec

import (
	"fmt"
	"strings"
)

// FieldError is one problem in a lab spec, located by its field path
// (e.g. "spec.routers[1].asn") and, when known, its line in the file.
type FieldError struct {
	Path   string `json:"path"`
	Line   int    `json:"line,omitempty"`
	Detail string `json:"detail"`
	Hint   string `json:"hint,omitempty"`
}

func (e FieldError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Detail)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	if e.Hint != "" {
		b.WriteString("\n    hint: ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// ErrorList is every problem found in a spec. It is an error when non-empty.
type ErrorList []FieldError

func (l ErrorList) Error() string {
	shown := min(len(l), MaxShownErrors)
	lines := make([]string, 0, shown+2)
	lines = append(lines, fmt.Sprintf("%d problem(s) in the lab spec:", len(l)))
	for _, e := range l[:shown] {
		lines = append(lines, "  - "+e.Error())
	}
	if more := len(l) - shown; more > 0 {
		lines = append(lines, fmt.Sprintf("  ... and %d more (fix these first)", more))
	}
	return strings.Join(lines, "\n")
}

// MaxShownErrors is how many problems an ErrorList prints; the count covers them all.
const MaxShownErrors = 50

// Err returns nil for an empty list, so callers can `return errs.Err()`.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// Add appends a problem.
func (l *ErrorList) Add(path, hint, format string, args ...any) {
	*l = append(*l, FieldError{Path: path, Detail: fmt.Sprintf(format, args...), Hint: hint})
}

// Path helpers keep field paths uniform.
func Field(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// Index returns parent[i].
func Index(parent string, i int) string { return fmt.Sprintf("%s[%d]", parent, i) }
