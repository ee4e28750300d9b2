package runtime

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"v6lab.dev/v6lab/labs/human"
)

// Progress shows a lifecycle's steps. On a terminal the running step has a spinner
// with its elapsed time, rewritten into "✓ name (elapsed): detail" or "✗ name
// (elapsed): error" when it ends; elsewhere (CI logs) every step prints a timestamped
// line when it starts and one when it ends.
type Progress struct {
	W   io.Writer
	tty bool
	now func() time.Time
}

// NewProgress writes to w, rewriting lines only when w is a terminal.
func NewProgress(w io.Writer) *Progress {
	return &Progress{W: w, tty: IsTerminal(w), now: time.Now}
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return true
		}
	}
	return false
}

// Step runs fn as a named step and reports how it ended.
func (p *Progress) Step(name string, fn func() (string, error)) error {
	now := p.now
	if now == nil {
		now = time.Now
	}
	start := now()
	stamp := ""
	stop := func() {}
	if p.tty {
		stop = p.spin(name, start)
	} else {
		stamp = start.Format("15:04:05") + "  "
		fmt.Fprintf(p.W, "%s… %s\n", stamp, name)
	}
	detail, err := fn()
	stop()
	end := now()
	if !p.tty {
		stamp = end.Format("15:04:05") + "  "
	}
	el := human.Duration(end.Sub(start))
	if err != nil {
		fmt.Fprintf(p.W, "%s✗ %s (%s): %v\n", stamp, name, el, err)
		return fmt.Errorf("%s: %w", name, err)
	}
	if detail != "" {
		detail = ": " + detail
	}
	fmt.Fprintf(p.W, "%s✓ %s (%s)%s\n", stamp, name, el, detail)
	return nil
}

// spin shows the running step with a spinner and its elapsed time until stop is
// called, which clears the line.
func (p *Progress) spin(name string, start time.Time) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		frames := []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			fmt.Fprintf(p.W, "\r\033[K  %c %s %s", frames[i%len(frames)], name, human.Duration(time.Since(start).Truncate(time.Second)))
			select {
			case <-done:
				fmt.Fprint(p.W, "\r\033[K")
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
