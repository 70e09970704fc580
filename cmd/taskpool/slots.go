package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"
)

// slotJSON is a held global concurrency slot as printed by slots --json.
type slotJSON struct {
	Queue   string `json:"queue"`
	Type    string `json:"type"`
	Slot    int    `json:"slot"`
	TaskID  string `json:"task_id"`
	Holder  string `json:"holder"`
	Renewed string `json:"renewed"`
}

func cmdSlots(e *env, args []string) error {
	return e.overQueues(e.flags("slots"), "taskpool slots", args, func(ctx context.Context, c *client, names []string) error {
		return reportSlots(ctx, e, c, names)
	})
}

func reportSlots(ctx context.Context, e *env, c *client, names []string) error {
	out := []slotJSON{}
	for _, q := range names {
		in, err := e.inspector(ctx, c, q)
		if err != nil {
			return err
		}
		ss, err := in.GlobalSlots(ctx)
		if err != nil {
			return err
		}
		for _, s := range ss {
			out = append(out, slotJSON{Queue: q, Type: s.Type, Slot: s.Slot, TaskID: s.TaskID, Holder: s.Holder,
				Renewed: s.Renewed.UTC().Format(time.RFC3339Nano)})
		}
	}
	if e.json {
		return writeJSON(e.stdout, out)
	}
	if len(out) == 0 {
		fmt.Fprintln(e.stdout, "no global slots held")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tTYPE\tSLOT\tTASK\tHOLDER\tRENEWED")
	for _, s := range out {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", s.Queue, s.Type, s.Slot, clip(s.TaskID, 40), s.Holder, s.Renewed)
	}
	return tw.Flush()
}
