package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// scheduleJSON is a schedule as printed by schedules --json.
type scheduleJSON struct {
	Queue    string `json:"queue"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Priority string `json:"priority"`
	Spec     string `json:"spec"`
	Periodic bool   `json:"periodic"`
	// NextRun is empty when the tool cannot compute it (cron specs).
	NextRun     string `json:"next_run,omitempty"`
	Registered  string `json:"registered"`
	DecodeError string `json:"decode_error,omitempty"`
}

func toScheduleJSON(q string, s natsbroker.Schedule) scheduleJSON {
	out := scheduleJSON{
		Queue: q, ID: s.ID, Type: s.Task.Type, Priority: s.Task.Priority.String(), Spec: s.Spec,
		Periodic: s.Periodic, Registered: s.Registered.UTC().Format(time.RFC3339Nano),
	}
	if !s.NextRun.IsZero() {
		out.NextRun = s.NextRun.UTC().Format(time.RFC3339Nano)
	}
	if s.DecodeErr != nil {
		out.DecodeError = s.DecodeErr.Error()
	}
	return out
}

func cmdSchedules(e *env, args []string) error {
	fs := e.flags("schedules")
	delayed := fs.Bool("delayed", false, "also list delayed tasks that are not yet due")
	return e.overQueues(fs, "taskpool schedules [--delayed]", args, func(ctx context.Context, c *client, names []string) error {
		return reportSchedules(ctx, e, c, names, *delayed)
	})
}

func reportSchedules(ctx context.Context, e *env, c *client, names []string, delayed bool) error {
	out := []scheduleJSON{}
	for _, q := range names {
		in, err := e.inspector(ctx, c, q)
		if err != nil {
			return err
		}
		ss, err := in.Schedules(ctx, delayed)
		if err != nil {
			return err
		}
		for _, s := range ss {
			out = append(out, toScheduleJSON(q, s))
		}
	}
	if e.json {
		return writeJSON(e.stdout, out)
	}
	if len(out) == 0 {
		fmt.Fprintln(e.stdout, "no schedules")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tID\tTYPE\tPRIORITY\tSPEC\tNEXT RUN")
	for _, s := range out {
		next := s.NextRun
		if next == "" {
			next = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Queue, clip(s.ID, 40), s.Type, s.Priority, s.Spec, next)
	}
	return tw.Flush()
}
