package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// deadJSON is a dead letter as printed by dead list and dead show --json.
type deadJSON struct {
	Sequence    uint64              `json:"sequence"`
	ID          string              `json:"id"`
	Type        string              `json:"type"`
	Priority    string              `json:"priority"`
	Attempts    int                 `json:"attempts"`
	FailedAt    string              `json:"failed_at,omitempty"`
	Error       string              `json:"error"`
	DecodeError string              `json:"decode_error,omitempty"`
	Subject     string              `json:"subject"`
	Params      json.RawMessage     `json:"params,omitempty"`
	Headers     map[string][]string `json:"headers,omitempty"`
	// Payload is the original message when it is not JSON.
	Payload string `json:"payload,omitempty"`
}

func toDeadJSON(dl natsbroker.DeadLetter, full bool) deadJSON {
	d := deadJSON{
		Sequence: dl.Sequence, ID: dl.Task.ID, Type: dl.Task.Type, Priority: dl.Task.Priority.String(),
		Attempts: dl.Attempts, Error: dl.Error, Subject: dl.Subject,
	}
	if d.ID == "" {
		d.ID = dl.Header.Get(natsbroker.HeaderTaskID)
	}
	if !dl.FailedAt.IsZero() {
		d.FailedAt = dl.FailedAt.UTC().Format(time.RFC3339Nano)
	}
	if dl.DecodeErr != nil {
		d.DecodeError = dl.DecodeErr.Error()
	}
	if full {
		d.Headers = dl.Header
		if dl.DecodeErr == nil {
			d.Params = params(dl)
		}
		if json.Valid(dl.Data) {
			if d.Params == nil && dl.DecodeErr != nil {
				d.Params = dl.Data
			}
		} else {
			d.Payload = string(dl.Data)
		}
	}
	return d
}

// params returns a decoded task's params as JSON.
func params(dl natsbroker.DeadLetter) json.RawMessage {
	switch p := dl.Task.Params.(type) {
	case json.RawMessage:
		return p
	case []byte:
		if json.Valid(p) {
			return p
		}
	case nil:
		return nil
	}
	b, err := json.Marshal(dl.Task.Params)
	if err != nil {
		return nil
	}
	return b
}

func cmdDead(e *env, args []string) error {
	// The global flags may come between "dead" and its subcommand too
	// ("dead --json list"), as before and after any command; the
	// subcommand's own flags come after it.
	fs := e.flags("dead")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(e.stdout, deadUsage)
			return flag.ErrHelp
		}
		return usagef("%v (see --help)", err)
	}
	args = fs.Args()
	if len(args) == 0 {
		return usagef("want list, show, requeue, delete or purge")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "list":
		return deadList(e, rest)
	case "show":
		return deadShow(e, rest)
	case "requeue":
		return deadEach(e, "requeue", rest)
	case "delete":
		return deadEach(e, "delete", rest)
	case "purge":
		return deadPurge(e, rest)
	case "-h", "--help", "-help", "help":
		fmt.Fprint(e.stdout, deadUsage)
		return flag.ErrHelp
	default:
		return usagef("unknown dead-letter command %q: want list, show, requeue, delete or purge", sub)
	}
}

// openDead connects and opens the queue's inspector; close the client.
func (e *env) openDead(ctx context.Context) (*client, *natsbroker.Inspector, error) {
	c, err := e.connect()
	if err != nil {
		return nil, nil, err
	}
	in, err := e.inspector(ctx, c, e.queueName())
	if err != nil {
		c.close()
		return nil, nil, err
	}
	return c, in, nil
}

func deadList(e *env, args []string) error {
	fs := e.flags("dead list")
	after := fs.Uint64("after", 0, "list dead letters after this `sequence`")
	limit := fs.Int("limit", 100, "list at most `n` dead letters (0: all)")
	pos, err := e.parse(fs, "taskpool dead list", args)
	if err != nil {
		return err
	}
	ctx, cancel := e.context()
	defer cancel()
	if err := noArgs(pos); err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("--limit must not be negative")
	}
	n := *limit
	if n == 0 {
		n = math.MaxInt
	}
	c, in, err := e.openDead(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	dls, err := in.DeadLetters(ctx, *after, n)
	if err != nil {
		return err
	}
	out := make([]deadJSON, 0, len(dls))
	for _, dl := range dls {
		out = append(out, toDeadJSON(dl, false))
	}
	if e.json {
		return writeJSON(e.stdout, out)
	}
	if len(out) == 0 {
		fmt.Fprintf(e.stdout, "no dead letters in queue %s\n", e.queueName())
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTASK ID\tTYPE\tPRIORITY\tATTEMPTS\tFAILED AT\tERROR")
	for _, d := range out {
		msg := d.Error
		if d.DecodeError != "" {
			msg = "undecodable: " + d.DecodeError
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Sequence, d.ID, d.Type, d.Priority, d.Attempts, d.FailedAt, clip(msg, 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(out) == n {
		fmt.Fprintf(e.stdout, "(first %d shown: --after %d for the next page)\n", n, out[len(out)-1].Sequence)
	}
	return nil
}

// resolve returns the sequence of the dead letter named by arg: a
// sequence number, or else a task ID looked up among the dead letters.
func resolve(ctx context.Context, in *natsbroker.Inspector, arg string) (uint64, error) {
	if seq, err := strconv.ParseUint(arg, 10, 64); err == nil {
		return seq, nil
	}
	var after uint64
	for {
		page, err := in.DeadLetters(ctx, after, 256)
		if err != nil {
			return 0, err
		}
		for _, dl := range page {
			if dl.Task.ID == arg || dl.Header.Get(natsbroker.HeaderTaskID) == arg {
				return dl.Sequence, nil
			}
		}
		if len(page) < 256 {
			return 0, fmt.Errorf("%w: no dead letter with sequence or task ID %q", errNotFound, arg)
		}
		after = page[len(page)-1].Sequence
	}
}

// notFound turns the broker's ErrNotFound into the CLI's.
func notFound(err error) error {
	if errors.Is(err, natsbroker.ErrNotFound) {
		return fmt.Errorf("%w: %v", errNotFound, err)
	}
	return err
}

func deadShow(e *env, args []string) error {
	fs := e.flags("dead show")
	pos, err := e.parse(fs, "taskpool dead show ID", args)
	if err != nil {
		return err
	}
	ctx, cancel := e.context()
	defer cancel()
	if len(pos) != 1 {
		return usagef("want one dead letter ID (sequence or task ID)")
	}
	c, in, err := e.openDead(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	seq, err := resolve(ctx, in, pos[0])
	if err != nil {
		return err
	}
	// The inspector reads dead letters in pages: ask for the one after
	// seq-1 and check that it is seq.
	if seq == 0 {
		return fmt.Errorf("%w: dead letter 0 in queue %s", errNotFound, e.queueName())
	}
	page, err := in.DeadLetters(ctx, seq-1, 1)
	if err != nil {
		return err
	}
	if len(page) == 0 || page[0].Sequence != seq {
		return fmt.Errorf("%w: dead letter %d in queue %s", errNotFound, seq, e.queueName())
	}
	d := toDeadJSON(page[0], true)
	if e.json {
		return writeJSON(e.stdout, d)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Sequence", strconv.FormatUint(d.Sequence, 10))
	row("Task ID", d.ID)
	row("Type", d.Type)
	row("Priority", d.Priority)
	row("Attempts", strconv.Itoa(d.Attempts))
	row("Failed at", d.FailedAt)
	row("Subject", d.Subject)
	row("Error", d.Error)
	if d.DecodeError != "" {
		row("Decode error", d.DecodeError)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	keys := make([]string, 0, len(d.Headers))
	for k := range d.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(e.stdout, "Headers:")
	for _, k := range keys {
		for _, v := range d.Headers[k] {
			fmt.Fprintf(e.stdout, "  %s: %s\n", k, v)
		}
	}
	switch {
	case d.Params != nil:
		var pretty json.RawMessage
		b, err := json.MarshalIndent(d.Params, "  ", "  ")
		if err == nil {
			pretty = b
		} else {
			pretty = d.Params
		}
		fmt.Fprintf(e.stdout, "Params:\n  %s\n", pretty)
	case d.Payload != "":
		fmt.Fprintf(e.stdout, "Payload:\n  %q\n", d.Payload)
	}
	return nil
}

// deadEach requeues or deletes each dead letter named; the ones not found
// are reported and make the exit code 3, the others are still done.
func deadEach(e *env, op string, args []string) error {
	fs := e.flags("dead " + op)
	all := fs.Bool("all", false, "every dead letter of the queue, as listed when the command starts")
	mode := progressMode("auto")
	fs.Var(&mode, "progress", "draw progress on stderr: `auto` (when it is a terminal), always or never")
	pos, err := e.parse(fs, "taskpool dead "+op+" ID... | --all", args)
	if err != nil {
		return err
	}
	ctx, cancel := e.context()
	defer cancel()
	switch {
	case *all && len(pos) > 0:
		return usagef("give dead letter IDs or --all, not both")
	case !*all && len(pos) == 0:
		return usagef("want at least one dead letter ID (sequence or task ID), or --all")
	}
	c, in, err := e.openDead(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	if *all {
		// The list is taken first: a requeued task that fails again is
		// dead-lettered anew, after it, and is not taken again.
		if pos, err = allDead(ctx, in); err != nil {
			return err
		}
	}
	bar := e.newProgress(mode, op, len(pos))
	type result struct {
		Arg      string `json:"arg"`
		Sequence uint64 `json:"sequence,omitempty"`
		ID       string `json:"id,omitempty"`
		// NewSequence is the requeued task's sequence in the task stream.
		NewSequence uint64 `json:"new_sequence,omitempty"`
		Done        bool   `json:"done"`
		Error       string `json:"error,omitempty"`
	}
	results := []result{}
	var missing, failed error
	for _, arg := range pos {
		r := result{Arg: arg}
		seq, err := resolve(ctx, in, arg)
		if err == nil {
			r.Sequence = seq
			switch op {
			case "requeue":
				var rc natsbroker.Receipt
				rc, err = in.Resubmit(ctx, seq)
				r.ID, r.NewSequence = rc.ID, rc.Sequence
			case "delete":
				err = in.DeleteDeadLetter(ctx, seq)
			}
		}
		err = notFound(err)
		switch {
		case err == nil:
			r.Done = true
		case errors.Is(err, errNotFound):
			missing = err
		default:
			failed = err
		}
		if err != nil {
			r.Error = err.Error()
		}
		results = append(results, r)
		bar.step()
	}
	bar.end()
	if e.json {
		if err := writeJSON(e.stdout, results); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			switch {
			case !r.Done:
				fmt.Fprintf(e.stderr, "%s: %s\n", r.Arg, r.Error)
			case op == "requeue":
				fmt.Fprintf(e.stdout, "requeued dead letter %d as task %s (stream sequence %d)\n", r.Sequence, r.ID, r.NewSequence)
			default:
				fmt.Fprintf(e.stdout, "deleted dead letter %d\n", r.Sequence)
			}
		}
	}
	switch {
	case failed != nil:
		return failed
	case missing != nil:
		return missing
	}
	return nil
}

// allDead returns the sequence numbers of every dead letter of the queue,
// oldest first.
func allDead(ctx context.Context, in *natsbroker.Inspector) ([]string, error) {
	var seqs []string
	var after uint64
	for {
		page, err := in.DeadLetters(ctx, after, 256)
		if err != nil {
			return nil, err
		}
		for _, dl := range page {
			seqs = append(seqs, strconv.FormatUint(dl.Sequence, 10))
		}
		if len(page) < 256 {
			return seqs, nil
		}
		after = page[len(page)-1].Sequence
	}
}

func deadPurge(e *env, args []string) error {
	fs := e.flags("dead purge")
	yes := fs.Bool("yes", false, "confirm: delete every dead letter of the queue")
	pos, err := e.parse(fs, "taskpool dead purge --yes", args)
	if err != nil {
		return err
	}
	ctx, cancel := e.context()
	defer cancel()
	if err := noArgs(pos); err != nil {
		return err
	}
	if !*yes {
		return usagef("purge deletes every dead letter of queue %s: confirm with --yes", e.queueName())
	}
	c, in, err := e.openDead(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	n, err := in.PurgeDeadLetters(ctx)
	if err != nil {
		return err
	}
	if e.json {
		return writeJSON(e.stdout, map[string]any{"queue": e.queueName(), "purged": n})
	}
	fmt.Fprintf(e.stdout, "purged %d dead letters from queue %s\n", n, e.queueName())
	return nil
}
