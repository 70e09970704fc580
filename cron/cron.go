// Package cron turns cron expressions into [taskpool.Schedule] values for
// [taskpool.Scheduler.SchedulePeriodic] and [taskpool.Client]'s
// SchedulePeriodic. Its dialect is also the one the NATS broker's
// Producer.Schedule takes; a parsed Schedule's String method returns the
// expression, which a broker hands to its server.
//
// It wraps the parser of github.com/robfig/cron/v3 and accepts what that
// parser's ParseStandard accepts:
//
//   - the five standard fields, minute hour day-of-month month day-of-week,
//     with lists, ranges, steps and names ("*/15 9-17 * * MON-FRI");
//   - the descriptors @yearly (@annually), @monthly, @weekly, @daily
//     (@midnight) and @hourly;
//   - "@every <duration>", a fixed interval in time.ParseDuration syntax
//     (one space after "@every"): each activation is the duration after
//     the one before, exactly as [taskpool.Every] with that duration, in
//     process and on a broker's server alike (robfig's parser rounds it
//     to whole seconds; this package does not). Zero or a negative
//     duration is an error. A broker's server may run only some
//     intervals: the NATS broker's runs whole seconds, at least one,
//     and its client refuses another;
//   - an optional "CRON_TZ=Area/City " or "TZ=Area/City " prefix that fixes
//     the time zone in which the fields are read.
//
// A six-field expression with seconds is rejected.
//
// # Time zones
//
// The fields of an expression are matched against wall-clock time in one
// location. In order of precedence, that location is:
//
//  1. the expression's own CRON_TZ= or TZ= prefix;
//  2. the location given to [ParseInLocation];
//  3. otherwise ([Parse] without a prefix), the location of the time
//     passed to Next. With [taskpool.SystemClock] that is time.Local.
//
// A prefix's zone is loaded with time.LoadLocation, which needs the IANA
// time zone database on the machine or, by importing time/tzdata, in the
// program.
//
// Next returns its result in the location of the time it was given. Across
// a daylight-saving change the schedule follows the wall clock: "0 9 * * *"
// in America/New_York fires at 09:00 local time on both sides of the
// change, so at 14:00 UTC in winter and 13:00 UTC in summer. A time that
// the change skips does not fire that day ("30 2 * * *" in New York on the
// day clocks go forward), and one that it repeats fires twice ("30 1 * * *"
// on the day they go back, at 01:30 EDT and again at 01:30 EST).
//
// # Errors
//
// Every parse error wraps [ErrInvalidExpr] and carries the parser's message.
package cron

import (
	"errors"
	"fmt"
	"strings"
	"time"

	robfig "github.com/robfig/cron/v3"

	"github.com/taskpool/taskpool"
)

// ErrInvalidExpr is returned by [Parse] and [ParseInLocation] for an
// expression they cannot parse, an unknown time zone in its prefix, or (by
// ParseInLocation) a nil location. The returned error wraps it together
// with the expression and the parser's message; test for it with
// errors.Is.
var ErrInvalidExpr = errors.New("cron: invalid expression")

// schedule adapts a robfig schedule. loc, when not nil, is the location the
// fields are read in; nil means the location of the time given to Next.
type schedule struct {
	s    robfig.Schedule
	loc  *time.Location
	expr string // as given, trimmed; with a CRON_TZ= prefix for ParseInLocation's loc
}

var _ taskpool.Schedule = schedule{}

// Parse parses a cron expression into a [taskpool.Schedule]: five standard
// fields, a descriptor such as @daily or "@every 1h30m", and an optional
// "CRON_TZ=Area/City " or "TZ=Area/City " prefix. Without a prefix the
// fields are read in the location of the time passed to Next (see the
// package documentation). Leading and trailing white space is ignored.
//
// The returned Schedule's Next returns the first activation strictly after
// its argument, in the argument's location, or the zero time when there is
// none within five years (as for "0 0 30 2 *"). It is safe for concurrent
// use.
//
// Parse returns an error wrapping [ErrInvalidExpr] when expr is not valid.
func Parse(expr string) (taskpool.Schedule, error) {
	return parse(expr, nil)
}

// ParseInLocation is like [Parse] but reads the fields of expr in loc, for
// any time given to Next. A CRON_TZ= or TZ= prefix in expr wins over loc:
// the expression names its own zone. Passing time.Local reads the fields
// in the machine's local time, whatever the location of the time given to
// Next.
//
// ParseInLocation returns an error wrapping [ErrInvalidExpr] when expr is
// not valid or loc is nil.
func ParseInLocation(expr string, loc *time.Location) (taskpool.Schedule, error) {
	if loc == nil {
		return nil, fmt.Errorf("%w %q: nil location", ErrInvalidExpr, expr)
	}
	return parse(expr, loc)
}

// Next returns the first activation strictly after after, in after's
// location, or the zero time when there is none.
func (s schedule) Next(after time.Time) time.Time {
	if s.loc == nil {
		return s.s.Next(after)
	}
	next := s.s.Next(after.In(s.loc))
	if next.IsZero() {
		return time.Time{}
	}
	return next.In(after.Location())
}

// parse parses expr; loc is the location for an expression without a zone
// prefix, nil for the location of the time given to Next.
func parse(expr string, loc *time.Location) (taskpool.Schedule, error) {
	expr = strings.TrimSpace(expr)
	prefixed := strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=")
	body, zone := expr, ""
	if prefixed {
		// robfig's parser slices the zone name up to the first space and
		// panics when there is none ("TZ=UTC", "TZ=UTC\t@daily"); it also
		// reads an empty name as UTC, which is more likely an unset
		// template variable than a choice. Reject both here.
		_, rest, _ := strings.Cut(expr, "=")
		var found bool
		zone, body, found = strings.Cut(rest, " ")
		if !found {
			return nil, fmt.Errorf("%w %q: no space after the time zone", ErrInvalidExpr, expr)
		}
		if zone == "" {
			return nil, fmt.Errorf("%w %q: empty time zone", ErrInvalidExpr, expr)
		}
		// robfig trims the white space after the zone as well.
		body = strings.TrimSpace(body)
	}
	if d, ok := strings.CutPrefix(body, "@every "); ok {
		// Not robfig's: it rounds the interval down to whole seconds
		// and any interval under a second, zero and negative ones
		// included, up to one second. Here "@every d" is Every(d), the
		// schedule whose String it is, so that one Schedule means the
		// same in process and on a broker's server.
		every, err := time.ParseDuration(d)
		if err != nil {
			return nil, fmt.Errorf("%w %q: failed to parse duration: %v", ErrInvalidExpr, expr, err)
		}
		if every <= 0 {
			return nil, fmt.Errorf("%w %q: interval %v, want > 0", ErrInvalidExpr, expr, every)
		}
		if prefixed {
			// An interval is the same in every zone, but a zone the
			// prefix names must exist, as for any other expression.
			if _, err := time.LoadLocation(zone); err != nil {
				return nil, fmt.Errorf("%w %q: %v", ErrInvalidExpr, expr, err)
			}
		}
		return schedule{s: taskpool.Every(every), expr: expr}, nil
	}
	s, err := robfig.ParseStandard(expr)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidExpr, expr, err)
	}
	if spec, ok := s.(*robfig.SpecSchedule); ok && prefixed {
		// The prefix wins over loc. Converting to its zone ourselves also
		// makes "CRON_TZ=Local" mean time.Local: robfig reads a Location of
		// time.Local as "the location of the time given to Next".
		loc = spec.Location
	}
	if loc != nil && !prefixed && loc != time.Local {
		// The expression names ParseInLocation's zone, so that a broker
		// that runs it on its server reads it in the same zone.
		expr = "CRON_TZ=" + loc.String() + " " + expr
	}
	return schedule{s: s, loc: loc, expr: expr}, nil
}

// String returns the expression, trimmed, with a "CRON_TZ=<zone> " prefix
// when [ParseInLocation] gave its zone (other than time.Local): the
// schedule in the dialect a broker's client hands to its server. The
// prefix names the zone by its name (loc.String()), so for a location that
// time.LoadLocation cannot load by that name, such as a time.FixedZone,
// String is an expression that Parse refuses and a broker cannot run;
// give a broker an IANA zone.
func (s schedule) String() string { return s.expr }
