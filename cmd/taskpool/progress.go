package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progressMode is the --progress flag: auto (draw when stderr is a
// terminal), always or never.
type progressMode string

func (m *progressMode) String() string { return string(*m) }

func (m *progressMode) Set(s string) error {
	switch s {
	case "auto", "always", "never":
		*m = progressMode(s)
		return nil
	}
	return fmt.Errorf("want auto, always or never, not %q", s)
}

// progress draws a bulk operation's progress on one line of w, redrawn
// in place ("requeue  12/40 [======              ]"), at most ten times a
// second and once at the end. A zero progress draws nothing.
type progress struct {
	w     io.Writer
	op    string
	total int
	done  int
	last  time.Time
}

// newProgress returns the progress of op over total items, drawn on
// e.stderr when mode says so and there is more than one item.
func (e *env) newProgress(mode progressMode, op string, total int) *progress {
	on := mode == "always" || (mode == "auto" && isTerminal(e.stderr))
	if !on || total < 2 {
		return &progress{}
	}
	return &progress{w: e.stderr, op: op, total: total}
}

// step counts one item done.
func (p *progress) step() {
	if p.w == nil {
		return
	}
	p.done++
	if now := time.Now(); p.done == p.total || now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		const width = 20
		n := width * p.done / p.total
		fmt.Fprintf(p.w, "\r%s %*d/%d [%s%s]", p.op, len(fmt.Sprint(p.total)), p.done, p.total,
			strings.Repeat("=", n), strings.Repeat(" ", width-n))
	}
}

// end ends the progress line.
func (p *progress) end() {
	if p.w != nil && p.done > 0 {
		fmt.Fprintln(p.w)
	}
}

// isTerminal reports whether w is a character device, such as a
// terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
