package runtime

import (
	"fmt"
	"io"
	"os"
	"time"
)

// Progress prints one line per step: "✓ name (elapsed)" or "✗ name (elapsed): error".
// On a terminal the running step is shown first and rewritten when it ends; elsewhere
// (CI logs) only the final lines are printed.
type Progress struct {
	W   io.Writer
	tty bool
}

// NewProgress writes to w, rewriting lines only when w is a terminal.
func NewProgress(w io.Writer) *Progress {
	p := &Progress{W: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// Step runs fn as a named step and reports how it ended.
func (p *Progress) Step(name string, fn func() (string, error)) error {
	start := time.Now()
	if p.tty {
		fmt.Fprintf(p.W, "  … %s", name)
	}
	detail, err := fn()
	el := time.Since(start).Round(100 * time.Millisecond)
	if p.tty {
		fmt.Fprint(p.W, "\r\033[K")
	}
	if err != nil {
		fmt.Fprintf(p.W, "✗ %s (%s): %v\n", name, el, err)
		return fmt.Errorf("%s: %w", name, err)
	}
	if detail != "" {
		detail = ": " + detail
	}
	fmt.Fprintf(p.W, "✓ %s (%s)%s\n", name, el, detail)
	return nil
}
