package natsbroker

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/taskpool/taskpool"
)

// Schedule is a periodic schedule registered with [Producer.Schedule], or
// a delayed task not yet due, as the server holds it.
type Schedule struct {
	// ID is the id given to Schedule, or the delayed task's ID. Delayed
	// tasks and periodic schedules are two namespaces, as in process: an
	// ID may be listed twice, once of each kind.
	ID string
	// Spec is the schedule in the dialect Producer.Schedule takes and
	// cron.Parse reads, as the in-process Inspect shows a schedule's:
	// five fields, a descriptor or "@every <d>", with a "CRON_TZ=<zone> "
	// prefix when the schedule has a zone. A delayed task's is
	// "@at <RFC 3339 time>".
	Spec string
	// Periodic is false for a delayed task.
	Periodic bool
	// Task is the task emitted on each tick, or the delayed task; zero
	// when DecodeErr is set. Its Attempt is the attempt its first run will
	// be: 1, or the Attempt a delayed task was enqueued with (carried by
	// [HeaderFirstAttempt]), as the in-process Inspect lists it.
	Task taskpool.Task
	// DecodeErr is the codec's error for a payload that is not a task.
	DecodeErr error
	// Registered is when the schedule was stored.
	Registered time.Time
	// NextRun is when the server next emits the task, computed from Spec
	// as the server runs it: exact for "@at", "@every" (intervals count
	// from Registered rounded to the second, as the server counts them),
	// "@hourly" and "@daily" (@midnight; in the schedule's time zone, UTC
	// without one), zero for the other specs. The exception is "@every"
	// after an outage: a server that fires a tick more than an interval
	// late (it was down, or the stream had no leader, across the tick and
	// the interval after it) counts the later ticks from that firing,
	// rounded to the second, and one restarted after a crash without the
	// schedule state it saves counts from its start-up. It does not store
	// that where it can be read, so NextRun stays on the grid of
	// Registered, after now and up to an interval off the server's next
	// tick, until the schedule is registered with another spec or task, or
	// cancelled and registered again.
	NextRun time.Time
}

// Schedules returns the periodic schedules and, with delayed set, the
// delayed tasks not yet due that the server holds (not those delayed on
// the client side, stored as queued tasks: see QueueInfo.Scheduled),
// sorted by NextRun (unknown last), then ID,
// then the delayed task before the schedule. It reads one message per
// schedule: a queue holding many delayed tasks makes it slow, which is why
// delayed tasks are asked for.
func (i *Inspector) Schedules(ctx context.Context, delayed bool) ([]Schedule, error) {
	if err := checkCtx(ctx, "Inspector.Schedules"); err != nil {
		return nil, err
	}
	st, err := i.q.tasks.Info(ctx, jetstream.WithSubjectFilter(i.q.schedPrefix+">"))
	if err != nil {
		return nil, fmt.Errorf("natsbroker: schedules %s: %w", i.cfg.queue, err)
	}
	now := time.Now()
	out := []Schedule{}
	for subj := range st.State.Subjects {
		// A delayed task's subject, or a periodic schedule's (where
		// earlier versions also stored delayed tasks).
		token, delaySubj := strings.CutPrefix(subj, i.q.delayPrefix)
		if !delaySubj {
			token = strings.TrimPrefix(subj, i.q.schedPrefix)
		} else if !delayed {
			continue
		}
		raw, err := i.q.tasks.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // fired or cancelled meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("natsbroker: schedules %s: %w", i.cfg.queue, err)
		}
		spec := raw.Header.Get(hdrSchedule)
		if spec == "" {
			continue // not a schedule (a client-side delay has no subject here)
		}
		s := Schedule{Spec: spec, Periodic: !isDelayed(spec), Registered: raw.Time}
		if !s.Periodic && !delayed {
			continue
		}
		if id, err := base64.RawURLEncoding.DecodeString(token); err == nil {
			s.ID = string(id)
		}
		s.Task, s.DecodeErr = i.cfg.codec.Decode(raw.Data)
		if s.DecodeErr == nil {
			s.Task.Metadata = metadataOf(raw.Header)
			s.Task.Attempt = 1
			if n, err := strconv.Atoi(raw.Header.Get(HeaderFirstAttempt)); err == nil && n > 1 {
				s.Task.Attempt = n
			}
		}
		zone := raw.Header.Get(hdrScheduleTimeZone)
		s.NextRun = nextRun(spec, zone, raw.Time, now)
		if s.Periodic {
			s.Spec = dialectSpec(spec, zone)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Schedule) int {
		switch {
		case a.NextRun.IsZero() != b.NextRun.IsZero():
			if a.NextRun.IsZero() {
				return 1
			}
			return -1
		case !a.NextRun.Equal(b.NextRun):
			return a.NextRun.Compare(b.NextRun)
		case a.ID != b.ID:
			return strings.Compare(a.ID, b.ID)
		case a.Periodic != b.Periodic:
			if a.Periodic {
				return 1
			}
			return -1
		}
		return 0
	})
	return out, nil
}

// dialectSpec turns a schedule as the server holds it (six fields, seconds
// first, and its zone in a header of its own) back into the cron dialect
// Producer.Schedule took it in: the seconds field, always 0, dropped, and
// the zone as a CRON_TZ= prefix.
func dialectSpec(pattern, zone string) string {
	spec := pattern
	if f := strings.Fields(pattern); len(f) == 6 && f[0] == "0" {
		spec = strings.Join(f[1:], " ")
	}
	if zone != "" {
		spec = "CRON_TZ=" + zone + " " + spec
	}
	return spec
}

// nextRun computes the next tick after now of spec in zone (the
// Nats-Schedule-Time-Zone header, empty for UTC), registered at reg, as
// the server computes it; zero for a spec it does not compute (cron
// expressions, @weekly and longer, a zone this machine does not know).
func nextRun(spec, zone string, reg, now time.Time) time.Time {
	loc := time.UTC
	if zone != "" {
		var err error
		if loc, err = time.LoadLocation(zone); err != nil {
			return time.Time{}
		}
	}
	switch {
	case strings.HasPrefix(spec, "@at "):
		t, _ := time.Parse(time.RFC3339Nano, strings.TrimPrefix(spec, "@at "))
		return t
	case strings.HasPrefix(spec, "@every "):
		d, err := time.ParseDuration(strings.TrimPrefix(spec, "@every "))
		if err != nil || d <= 0 {
			return time.Time{}
		}
		// The server counts each tick from the last one rounded to the
		// second, the first from the time it stored the schedule.
		reg = reg.Round(time.Second)
		if now.Before(reg) {
			return reg.Add(d)
		}
		return reg.Add(d * (now.Sub(reg)/d + 1))
	case spec == "@hourly":
		// On the hour in the zone (Asia/Kolkata's is at half past in
		// UTC).
		t := now.In(loc)
		return time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, loc)
	case spec == "@daily", spec == "@midnight":
		y, m, d := now.In(loc).Date()
		return time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	}
	return time.Time{}
}
