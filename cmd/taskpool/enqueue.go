package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

type receiptJSON struct {
	Queue     string `json:"queue"`
	ID        string `json:"id"`
	Type      string `json:"type"`
	Priority  string `json:"priority"`
	Sequence  uint64 `json:"sequence"`
	Duplicate bool   `json:"duplicate"`
	RunAt     string `json:"run_at,omitempty"`
}

func parsePriority(s string) (taskpool.Priority, error) {
	switch s {
	case "high":
		return taskpool.PriorityHigh, nil
	case "default", "":
		return taskpool.PriorityDefault, nil
	case "low":
		return taskpool.PriorityLow, nil
	}
	return 0, usagef("--priority %q: want high, default or low", s)
}

func cmdEnqueue(e *env, args []string) error {
	fs := e.flags("enqueue")
	prio := fs.String("priority", "default", "`priority`: high, default or low")
	delay := fs.Duration("delay", 0, "run the task this long from now")
	id := fs.String("id", "", "task `ID` (default: generated; the same ID within the duplicate window is stored once)")
	unique := fs.String("unique", "", "unique `key`: refused while another task holds it")
	maxAttempts := fs.Int("max-attempts", 0, "runs before the task is dead-lettered (default: the consumer's)")
	timeout := fs.Duration("task-timeout", 0, "timeout of one run of the handler (default: the consumer's)")
	create := fs.Bool("create", false, "create the queue, with the broker's default settings, if it does not exist")
	pos, err := e.parse(fs, "taskpool enqueue TYPE JSON", args)
	if err != nil {
		return err
	}
	ctx, cancel := e.context()
	defer cancel()
	if len(pos) != 2 {
		return usagef("want TYPE and JSON params, got %d arguments", len(pos))
	}
	typ, params := pos[0], []byte(pos[1])
	if typ == "" {
		return usagef("empty task type")
	}
	if !json.Valid(params) {
		return usagef("params are not valid JSON: %s", clip(pos[1], 60))
	}
	p, err := parsePriority(*prio)
	if err != nil {
		return err
	}
	if *delay < 0 || *maxAttempts < 0 {
		return usagef("--delay and --max-attempts must not be negative")
	}
	c, err := e.connect()
	if err != nil {
		return err
	}
	defer c.close()
	q := e.queueName()
	opts, err := queueOptions(ctx, c, q)
	if errors.Is(err, errNotFound) && *create {
		opts, err = []natsbroker.Option{natsbroker.WithQueue(q)}, nil
	}
	if err != nil {
		return err
	}
	prod, err := natsbroker.NewProducer(ctx, c.js, opts...)
	if err != nil {
		return err
	}
	t := taskpool.Task{
		ID: *id, Type: typ, Params: json.RawMessage(params), Priority: p,
		UniqueKey: *unique, MaxAttempts: *maxAttempts, Timeout: *timeout,
	}
	var eo []natsbroker.EnqueueOption
	if *delay > 0 {
		eo = append(eo, natsbroker.Delay(*delay))
	}
	r, err := prod.Enqueue(ctx, t, eo...)
	if err != nil {
		return err
	}
	out := receiptJSON{Queue: q, ID: r.ID, Type: typ, Priority: p.String(), Sequence: r.Sequence, Duplicate: r.Duplicate}
	if !r.RunAt.IsZero() {
		out.RunAt = r.RunAt.UTC().Format(time.RFC3339Nano)
	}
	if e.json {
		return writeJSON(e.stdout, out)
	}
	switch {
	case r.Duplicate:
		fmt.Fprintf(e.stdout, "duplicate: task %s was already enqueued on queue %s within the duplicate window; nothing stored\n", r.ID, q)
	case out.RunAt != "":
		fmt.Fprintf(e.stdout, "enqueued %s task %s on queue %s (%s priority, stream sequence %d), due at %s\n",
			typ, r.ID, q, p, r.Sequence, out.RunAt)
	default:
		fmt.Fprintf(e.stdout, "enqueued %s task %s on queue %s (%s priority, stream sequence %d)\n", typ, r.ID, q, p, r.Sequence)
	}
	return nil
}
