package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// queueJSON is a queue as printed by queues --json.
type queueJSON struct {
	Queue       string         `json:"queue"`
	Priorities  []priorityJSON `json:"priorities"`
	Scheduled   uint64         `json:"scheduled"`
	DeadLetters uint64         `json:"dead_letters"`
}

type priorityJSON struct {
	Priority    string `json:"priority"`
	Pending     uint64 `json:"pending"`
	InFlight    int    `json:"in_flight"`
	Redelivered int    `json:"redelivered"`
	Waiting     int    `json:"waiting"`
}

func toQueueJSON(qi natsbroker.QueueInfo) queueJSON {
	out := queueJSON{Queue: qi.Queue, Scheduled: qi.Scheduled, DeadLetters: qi.DeadLetters, Priorities: []priorityJSON{}}
	for _, p := range qi.Priorities {
		out.Priorities = append(out.Priorities, priorityJSON{
			Priority: p.Priority.String(), Pending: p.Pending, InFlight: p.InFlight,
			Redelivered: p.Redelivered, Waiting: p.Waiting,
		})
	}
	return out
}

func cmdQueues(e *env, args []string) error {
	return e.overQueues(e.flags("queues"), "taskpool queues", args, func(ctx context.Context, c *client, names []string) error {
		return reportQueues(ctx, e, c, names)
	})
}

func reportQueues(ctx context.Context, e *env, c *client, names []string) error {
	out := []queueJSON{}
	for _, q := range names {
		in, err := e.inspector(ctx, c, q)
		if err != nil {
			return err
		}
		qi, err := in.Queue(ctx)
		if err != nil {
			return err
		}
		out = append(out, toQueueJSON(qi))
	}
	if e.json {
		return writeJSON(e.stdout, out)
	}
	if len(out) == 0 {
		fmt.Fprintln(e.stdout, "no queues")
		return nil
	}
	return writeQueues(e.stdout, out)
}

func writeQueues(w io.Writer, qs []queueJSON) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tPRIORITY\tPENDING\tIN FLIGHT\tREDELIVERED\tWAITING FETCHES")
	for _, q := range qs {
		for _, p := range q.Priorities {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\n", q.Queue, p.Priority, p.Pending, p.InFlight, p.Redelivered, p.Waiting)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tSCHEDULED\tDEAD LETTERS")
	for _, q := range qs {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", q.Queue, q.Scheduled, q.DeadLetters)
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// clip shortens s to n runes for a table cell, on one line.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
