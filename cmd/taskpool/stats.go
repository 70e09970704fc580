package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"
)

// statsJSON is what stats --json prints.
type statsJSON struct {
	Queues  []queueStatsJSON `json:"queues"`
	Account accountJSON      `json:"account"`
}

// queueStatsJSON holds the server's counters of one queue.
type queueStatsJSON struct {
	Queue string `json:"queue"`
	// Published is the task stream's last sequence: every message it
	// ever stored (tasks, delayed tasks' schedules, requeued dead letters).
	Published uint64 `json:"published"`
	// Stored and Bytes are what the task stream holds now.
	Stored uint64 `json:"stored"`
	Bytes  uint64 `json:"bytes"`
	// Pending, InFlight and Redelivered are summed over the priorities.
	Pending     uint64 `json:"pending"`
	InFlight    int    `json:"in_flight"`
	Redelivered int    `json:"redelivered"`
	// Delivered counts deliveries to workers (redeliveries included)
	// since the queue's consumers were created.
	Delivered uint64 `json:"delivered"`
	// Scheduled counts delayed tasks not yet due and periodic schedules.
	Scheduled   uint64 `json:"scheduled"`
	DeadLetters uint64 `json:"dead_letters"`
	DeadBytes   uint64 `json:"dead_bytes"`
}

type accountJSON struct {
	Memory    uint64 `json:"memory_bytes"`
	Storage   uint64 `json:"storage_bytes"`
	Streams   int    `json:"streams"`
	Consumers int    `json:"consumers"`
	APICalls  uint64 `json:"api_requests"`
	APIErrors uint64 `json:"api_errors"`
}

func cmdStats(e *env, args []string) error {
	return e.overQueues(e.flags("stats"), "taskpool stats", args, func(ctx context.Context, c *client, names []string) error {
		return reportStats(ctx, e, c, names)
	})
}

func reportStats(ctx context.Context, e *env, c *client, names []string) error {
	out := statsJSON{Queues: []queueStatsJSON{}}
	for _, q := range names {
		qs, err := queueStats(ctx, e, c, q)
		if err != nil {
			return err
		}
		out.Queues = append(out.Queues, qs)
	}
	ai, err := c.js.AccountInfo(ctx)
	if err != nil {
		return fmt.Errorf("account info: %w", err)
	}
	out.Account = accountJSON{
		Memory: ai.Memory, Storage: ai.Store, Streams: ai.Streams, Consumers: ai.Consumers,
		APICalls: ai.API.Total, APIErrors: ai.API.Errors,
	}
	if e.json {
		return writeJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tPUBLISHED\tDELIVERED\tSTORED\tPENDING\tIN FLIGHT\tREDELIVERED\tSCHEDULED\tDEAD LETTERS\tBYTES")
	for _, q := range out.Queues {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", q.Queue, q.Published, q.Delivered, q.Stored,
			q.Pending, q.InFlight, q.Redelivered, q.Scheduled, q.DeadLetters, q.Bytes+q.DeadBytes)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	a := out.Account
	fmt.Fprintf(e.stdout, "\nJetStream account: %d streams, %d consumers, %d bytes in memory, %d bytes on disk, %d API requests (%d errors)\n",
		a.Streams, a.Consumers, a.Memory, a.Storage, a.APICalls, a.APIErrors)
	return nil
}

func queueStats(ctx context.Context, e *env, c *client, q string) (queueStatsJSON, error) {
	qs := queueStatsJSON{Queue: q}
	in, err := e.inspector(ctx, c, q)
	if err != nil {
		return qs, err
	}
	qi, err := in.Queue(ctx)
	if err != nil {
		return qs, err
	}
	for _, p := range qi.Priorities {
		qs.Pending += p.Pending
		qs.InFlight += p.InFlight
		qs.Redelivered += p.Redelivered
	}
	qs.Scheduled, qs.DeadLetters = qi.Scheduled, qi.DeadLetters
	st, err := c.js.Stream(ctx, streamPrefix+q)
	if err != nil {
		return qs, fmt.Errorf("queue %q: %w", q, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return qs, fmt.Errorf("queue %q: %w", q, err)
	}
	qs.Published, qs.Stored, qs.Bytes = info.State.LastSeq, info.State.Msgs, info.State.Bytes
	cl := st.ListConsumers(ctx)
	for ci := range cl.Info() {
		qs.Delivered += ci.Delivered.Consumer
	}
	if err := cl.Err(); err != nil && err != jetstream.ErrEndOfData {
		return qs, fmt.Errorf("queue %q consumers: %w", q, err)
	}
	if dst, err := c.js.Stream(ctx, deadPrefix+q); err == nil {
		if di, err := dst.Info(ctx); err == nil {
			qs.DeadBytes = di.State.Bytes
		}
	}
	return qs, nil
}
