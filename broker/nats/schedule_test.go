package natsbroker_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
	"github.com/taskpool/taskpool/cron"
)

// Registering an unchanged schedule again, as every instance does at
// start-up, changes nothing: the stored schedule is not rewritten, so an
// @every interval is not restarted and a schedule re-registered more often
// than its interval still runs.
func TestScheduleReregisterUnchanged(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("resched")
	ticks := make(chan string, 16)
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("report", func(_ context.Context, task taskpool.Task) error {
		ticks <- task.ID
		return nil
	}))
	startConsumer(t, js, reg, q, natsbroker.WithPollWait(100*time.Millisecond))
	prod := newProducer(t, ctx, js, q)
	st, err := js.Stream(ctx, "TASKPOOL_resched")
	require.NoError(t, err)
	subj := "taskpool.resched.sched." + base64.RawURLEncoding.EncodeToString([]byte("report"))
	stored := func() uint64 {
		m, err := st.GetLastMsgForSubject(ctx, subj)
		require.NoError(t, err)
		return m.Sequence
	}

	task := taskpool.Task{Type: "report", Params: map[string]any{"b": 2, "a": 1}}
	require.NoError(t, prod.Schedule(ctx, "report", "@every 1s", task))
	first := stored()
	start := time.Now()
	// Re-register every 300ms, more often than the interval, as
	// instances restarting in a loop would.
	every := time.NewTicker(300 * time.Millisecond)
	defer every.Stop()
	deadline := time.After(6 * time.Second)
	got := 0
	for got < 2 {
		select {
		case <-every.C:
			require.NoError(t, prod.Schedule(ctx, "report", "@every 1s", task))
			assert.Equal(t, first, stored(), "unchanged schedule rewritten")
		case <-ticks:
			got++
		case <-deadline:
			t.Fatalf("%d ticks in 6s of an @every 1s schedule re-registered every 300ms", got)
		}
	}
	t.Logf("2 ticks in %v while re-registering every 300ms", time.Since(start))

	// A changed schedule replaces the stored one.
	require.NoError(t, prod.Schedule(ctx, "report", "@every 2s", task))
	assert.NotEqual(t, first, stored())
	require.NoError(t, prod.Cancel(ctx, "report"))
}

// Producer.Schedule takes the cron sub-module's dialect (five fields,
// descriptors, @every, a CRON_TZ= or TZ= prefix) and stores it in the
// server's (six fields, the zone as a header, @every as written); six
// fields are refused, as cron.Parse refuses them, and so is an @every
// interval the server would run at another pace (under a second, or not
// a whole number of seconds).
func TestScheduleCronDialect(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	prod := newProducer(t, ctx, js, natsbroker.WithQueue("dialect"))
	st, err := js.Stream(ctx, "TASKPOOL_dialect")
	require.NoError(t, err)
	tests := []struct {
		give, wantPattern, wantZone string
	}{
		{give: "*/15 9-17 * * MON-FRI", wantPattern: "0 */15 9-17 * * MON-FRI"},
		{give: "CRON_TZ=Europe/Paris 0 3 * * *", wantPattern: "0 0 3 * * *", wantZone: "Europe/Paris"},
		{give: " TZ=America/New_York  30 8 1 * * ", wantPattern: "0 30 8 1 * *", wantZone: "America/New_York"},
		{give: "CRON_TZ=Asia/Tokyo @daily", wantPattern: "@daily", wantZone: "Asia/Tokyo"},
		{give: "CRON_TZ=Asia/Tokyo @every 1h", wantPattern: "@every 1h"},
		{give: "@every 90s", wantPattern: "@every 90s"},
		{give: "@every 1s", wantPattern: "@every 1s"},
		{give: "@every 2m30s", wantPattern: "@every 2m30s"},
		{give: "@every 2000ms", wantPattern: "@every 2000ms"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			id := "d-" + base64.RawURLEncoding.EncodeToString([]byte(tt.give))
			require.NoError(t, prod.Schedule(ctx, id, tt.give, taskpool.Task{Type: "report"}))
			m, err := st.GetLastMsgForSubject(ctx, "taskpool.dialect.sched."+base64.RawURLEncoding.EncodeToString([]byte(id)))
			require.NoError(t, err)
			assert.Equal(t, tt.wantPattern, m.Header.Get("Nats-Schedule"))
			assert.Equal(t, tt.wantZone, m.Header.Get("Nats-Schedule-Time-Zone"))
			require.NoError(t, prod.Cancel(ctx, id))
		})
	}
	for _, bad := range []string{"0 0 3 * * *", "* * * *", "@fortnightly", "CRON_TZ= 0 3 * * *", "CRON_TZ=Europe/Paris",
		"@every -1h", "@every 0s", "@every soon", "@every 500ms", "@every 999ms", "TZ=UTC @every 1ns",
		"@every 1.5s", "@every 1.4s", "@every 2m30.5s", "@every 1s1ns",
		"CRON_TZ=Local 0 9 * * *", "TZ=Local @daily", "0 0 30 2 *", "0 0 31 4 *"} {
		assert.ErrorIs(t, prod.Schedule(ctx, "bad", bad, taskpool.Task{Type: "report"}), natsbroker.ErrInvalidOption, bad)
	}
	err = prod.Schedule(ctx, "zone", "CRON_TZ=Mars/Olympus 0 3 * * *", taskpool.Task{Type: "report"})
	assert.ErrorIs(t, err, natsbroker.ErrInvalidOption, "no such zone")
	assert.ErrorIs(t, err, cron.ErrInvalidExpr, "refused by cron.Parse")

	c := natsbroker.NewClient(prod)
	err = c.SchedulePeriodic("custom", scheduleFunc(func(after time.Time) time.Time { return after.Add(time.Minute) }), taskpool.Task{Type: "report"})
	assert.ErrorIs(t, err, taskpool.ErrInvalidOption, "a Schedule without an expression cannot run on the server")
	require.NoError(t, c.SchedulePeriodic("every", taskpool.Every(time.Hour), taskpool.Task{Type: "report"}))
	// Every(d) of whole seconds runs every d on the server as in
	// process; another d, which the server cannot run (under a second)
	// or would run at another pace (it rounds each tick to the second
	// before it adds the interval: 1.5s would run every 2s), is refused.
	require.NoError(t, c.SchedulePeriodic("every-secs", taskpool.Every(90*time.Second), taskpool.Task{Type: "report"}))
	m, err := st.GetLastMsgForSubject(ctx, "taskpool.dialect.sched."+base64.RawURLEncoding.EncodeToString([]byte("every-secs")))
	require.NoError(t, err)
	assert.Equal(t, "@every 1m30s", m.Header.Get("Nats-Schedule"))
	require.NoError(t, c.Unschedule("every-secs"))
	assert.ErrorIs(t, c.SchedulePeriodic("every-fast", taskpool.Every(500*time.Millisecond), taskpool.Task{Type: "report"}), taskpool.ErrInvalidOption)
	assert.ErrorIs(t, c.SchedulePeriodic("every-frac", taskpool.Every(1500*time.Millisecond), taskpool.Task{Type: "report"}), taskpool.ErrInvalidOption)
	require.NoError(t, c.Unschedule("every"))
}

type scheduleFunc func(time.Time) time.Time

func (f scheduleFunc) Next(after time.Time) time.Time { return f(after) }

// Inspector.Schedules lists periodic schedules with their spec and next
// run, and delayed tasks only when asked.
func TestInspectorSchedules(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("listsched")
	prod := newProducer(t, ctx, js, q)
	in := newInspector(t, ctx, js, q)

	before := time.Now()
	require.NoError(t, prod.Schedule(ctx, "nightly", "@daily", taskpool.Task{Type: "report"}))
	require.NoError(t, prod.Schedule(ctx, "tick", "@every 1h", taskpool.Task{Type: "ping", Params: map[string]any{"n": 1}}))
	at := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	mustEnqueue(t, ctx, prod, taskpool.Task{Type: "mail", ID: "later"}, natsbroker.At(at))

	got, err := in.Schedules(ctx, false)
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, "tick", got[0].ID, "the sooner first")
	assert.Equal(t, "@every 1h", got[0].Spec)
	assert.True(t, got[0].Periodic)
	assert.Equal(t, "ping", got[0].Task.Type)
	assert.WithinRange(t, got[0].NextRun, before.Add(time.Hour-time.Second), time.Now().Add(time.Hour+time.Second))
	assert.Equal(t, "nightly", got[1].ID)
	assert.Equal(t, "report", got[1].Task.Type)
	assert.Equal(t, got[1].NextRun.Truncate(24*time.Hour), got[1].NextRun, "midnight UTC")

	// Spec is the schedule as Producer.Schedule took it (and as the
	// in-process Inspect shows it): five fields, the zone as a prefix,
	// which cron.Parse reads back as the same schedule.
	for spec, want := range map[string]string{
		"CRON_TZ=Asia/Tokyo 0 3 * * *":  "CRON_TZ=Asia/Tokyo 0 3 * * *",
		" TZ=Europe/Paris  30 8 1 * * ": "CRON_TZ=Europe/Paris 30 8 1 * *",
		"*/15 9-17 * * MON-FRI":         "*/15 9-17 * * MON-FRI",
		"CRON_TZ=Asia/Tokyo @daily":     "CRON_TZ=Asia/Tokyo @daily",
	} {
		require.NoError(t, prod.Schedule(ctx, "spec", spec, taskpool.Task{Type: "report"}))
		list, err := in.Schedules(ctx, false)
		require.NoError(t, err)
		var found bool
		for _, sc := range list {
			if sc.ID == "spec" {
				found = true
				assert.Equal(t, want, sc.Spec, spec)
				_, err := cron.Parse(sc.Spec)
				assert.NoError(t, err, "cron.Parse reads Spec %q", sc.Spec)
			}
		}
		assert.True(t, found, spec)
		require.NoError(t, prod.Cancel(ctx, "spec"))
	}
	assert.WithinRange(t, got[1].NextRun, before, time.Now().Add(24*time.Hour))

	got, err = in.Schedules(ctx, true)
	require.NoError(t, err)
	require.Len(t, got, 3)
	var found bool
	for _, s := range got {
		if s.ID == "later" {
			found = true
			assert.False(t, s.Periodic)
			assert.True(t, at.Equal(s.NextRun), "%v != %v", at, s.NextRun)
		}
	}
	assert.True(t, found, "the delayed task is listed")

	require.NoError(t, prod.Cancel(ctx, "tick"))
	got, err = in.Schedules(ctx, false)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "nightly", got[0].ID)
}

// Producer.Schedule accepts exactly the specs cron.Parse accepts, white
// space included, so that a schedule written for the in-process
// scheduler registers on the server and the other way round; a spec
// Parse refuses is refused with ErrInvalidOption before it reaches the
// server.
func TestScheduleSpecsAsCronParse(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	prod := newProducer(t, ctx, js, natsbroker.WithQueue("specs"))
	tests := []struct {
		give string
		want bool // accepted
		// fast: an interval under a second or not of whole seconds,
		// which Parse accepts (it runs in process) and Schedule refuses
		// (the server cannot run it, or runs it at another pace) with
		// ErrInvalidOption
		fast bool
	}{
		{give: "@every 5s", want: true},
		{give: " @every 5s ", want: true},
		{give: "@every  5s"},
		{give: "@every\t5s"},
		{give: "@every 5s 5s"},
		{give: "@every5s"},
		{give: "TZ=UTC @every 5s", want: true},
		{give: "TZ=UTC  @every 5s", want: true},
		{give: "TZ=UTC @every  5s"},
		{give: "CRON_TZ=UTC \t@every 5s", want: true},
		{give: "TZ=UTC  @every -5s"},
		{give: "TZ=UTC  @every 0s"},
		{give: "@every 0s"},
		{give: "@every -1s"},
		{give: "@every 500ms", want: true, fast: true},
		{give: "@every 1ns", want: true, fast: true},
		{give: "@every 1.5s", want: true, fast: true},
		{give: "@every 3s", want: true},
		{give: "@every 1h30m", want: true},
		{give: "@daily", want: true},
		{give: " @daily ", want: true},
		{give: "@ daily"},
		{give: "@DAILY"},
		{give: "TZ=UTC  @daily", want: true},
		{give: "TZ=UTC\t@daily"},
		{give: "*/5 * * * *", want: true},
		{give: "*/5  *\t* * *", want: true},
		{give: "0 9 * * MON-FRI", want: true},
		{give: "0 0 1 JAN,JUL *", want: true},
		{give: "0 0 ? * 0", want: true},
		{give: "0 0 L * *"},
		{give: "0 0 * * 7"},
		{give: "60 * * * *"},
		{give: "0 0 * * * *"},
		{give: "CRON_TZ=Europe/Paris 0 3 * * *", want: true},
		{give: "CRON_TZ=Mars/Olympus 0 3 * * *"},
		{give: "CRON_TZ= 0 3 * * *"},
	}
	for i, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			_, perr := cron.Parse(tt.give)
			assert.Equal(t, tt.want, perr == nil, "cron.Parse: %v", perr)
			id := fmt.Sprintf("spec-%d", i)
			err := prod.Schedule(ctx, id, tt.give, taskpool.Task{Type: "report"})
			accepted := tt.want && !tt.fast
			assert.Equal(t, accepted, err == nil, "Schedule: %v", err)
			assert.Equal(t, !accepted, errors.Is(err, natsbroker.ErrInvalidOption), "refused before the server: %v", err)
			assert.Equal(t, accepted, prod.Cancel(ctx, id) == nil, "registered")
		})
	}
}

// kinds lists what Inspector.Schedules holds as "id periodic|delayed",
// sorted.
func kinds(t *testing.T, in *natsbroker.Inspector) []string {
	t.Helper()
	got, err := in.Schedules(ctxT(t), true)
	require.NoError(t, err)
	out := []string{}
	for _, s := range got {
		kind := "delayed"
		if s.Periodic {
			kind = "periodic " + s.Spec
		}
		out = append(out, s.ID+" "+kind)
	}
	slices.Sort(out)
	return out
}

// A delayed task and a periodic schedule may share an ID, as in process
// (SubmitAt and SchedulePeriodic): neither replaces the other, whichever
// comes first; the Client's Cancel takes the delayed task only, its
// Unschedule the schedule only, and Producer.Cancel both.
func TestDelayedTaskAndScheduleShareAnID(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("sharedid")
	prod := newProducer(t, ctx, js, q)
	in := newInspector(t, ctx, js, q)
	c := natsbroker.NewClient(prod)

	// The schedule first, then a delayed task with its ID.
	require.NoError(t, prod.Schedule(ctx, "a", "@every 1h", taskpool.Task{Type: "report"}))
	r := mustEnqueue(t, ctx, prod, taskpool.Task{ID: "a", Type: "mail"}, natsbroker.Delay(time.Hour))
	assert.False(t, r.Duplicate)
	// The delayed task first, then a schedule with its ID.
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "b", Type: "mail"}, natsbroker.Delay(time.Hour))
	require.NoError(t, prod.Schedule(ctx, "b", "@every 2h", taskpool.Task{Type: "report"}))
	// Registering the same schedule again still changes nothing.
	require.NoError(t, prod.Schedule(ctx, "b", "@every 2h", taskpool.Task{Type: "report"}))
	assert.Equal(t, []string{"a delayed", "a periodic @every 1h", "b delayed", "b periodic @every 2h"}, kinds(t, in))

	// Each kind is removed by its own call, and only by it.
	require.NoError(t, c.Cancel("a"))
	assert.ErrorIs(t, c.Cancel("a"), taskpool.ErrTaskNotFound)
	assert.Equal(t, []string{"a periodic @every 1h", "b delayed", "b periodic @every 2h"}, kinds(t, in))
	require.NoError(t, c.Unschedule("b"))
	assert.ErrorIs(t, c.Unschedule("b"), taskpool.ErrTaskNotFound)
	assert.Equal(t, []string{"a periodic @every 1h", "b delayed"}, kinds(t, in))
	require.NoError(t, c.Unschedule("a"))
	require.NoError(t, c.Cancel("b"))
	assert.Empty(t, kinds(t, in))

	// Producer.Cancel removes whatever is scheduled under the ID: both.
	require.NoError(t, prod.Schedule(ctx, "c", "@every 1h", taskpool.Task{Type: "report"}))
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "c", Type: "mail"}, natsbroker.Delay(time.Hour))
	require.NoError(t, prod.Cancel(ctx, "c"))
	assert.Empty(t, kinds(t, in))
	assert.ErrorIs(t, prod.Cancel(ctx, "c"), natsbroker.ErrNotFound)
}

// A delayed task stored by an earlier version, on the subject periodic
// schedules use (taskpool.<queue>.sched.<id>), is still a delayed task:
// listed, cancelled by Client.Cancel and not by Unschedule; and Schedule
// of its ID refuses with ErrDuplicateTask rather than replace it.
func TestDelayedTaskOfAnEarlierVersion(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("olddelay")
	prod := newProducer(t, ctx, js, q)
	in := newInspector(t, ctx, js, q)
	c := natsbroker.NewClient(prod)

	// As an earlier producer stored a delayed task.
	data, err := natsbroker.JSONCodec{}.Encode(taskpool.Task{ID: "old", Type: "mail"})
	require.NoError(t, err)
	msg := nats.NewMsg("taskpool.olddelay.sched." + base64.RawURLEncoding.EncodeToString([]byte("old")))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, "old")
	msg.Header.Set("Nats-Schedule", "@at "+time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano))
	msg.Header.Set("Nats-Schedule-Target", "taskpool.olddelay.task.default")
	_, err = js.PublishMsg(ctx, msg)
	require.NoError(t, err)
	assert.Equal(t, []string{"old delayed"}, kinds(t, in))

	err = prod.Schedule(ctx, "old", "@every 1h", taskpool.Task{Type: "report"})
	assert.ErrorIs(t, err, taskpool.ErrDuplicateTask, "a schedule would replace the delayed task")
	assert.Equal(t, []string{"old delayed"}, kinds(t, in), "the delayed task is kept")
	assert.ErrorIs(t, c.Unschedule("old"), taskpool.ErrTaskNotFound)
	require.NoError(t, c.Cancel("old"))
	assert.Empty(t, kinds(t, in))
	require.NoError(t, prod.Schedule(ctx, "old", "@every 1h", taskpool.Task{Type: "report"}), "the ID is free")
	assert.Equal(t, []string{"old periodic @every 1h"}, kinds(t, in))
}

// afterDelete is a task stream that calls after once its first DeleteMsg
// has returned.
type afterDelete struct {
	jetstream.Stream
	after func()
}

func (s *afterDelete) DeleteMsg(ctx context.Context, seq uint64) error {
	err := s.Stream.DeleteMsg(ctx, seq)
	if f := s.after; f != nil {
		s.after = nil
		f()
	}
	return err
}

// Cancel deletes the message it read, then purges the older messages of
// its subject: not one stored meanwhile. Here a delayed task of an earlier
// version, on the subject schedules use, is cancelled while another
// producer registers a schedule with its ID, which the cancel has just
// made free: the schedule is kept.
func TestCancelKeepsWhatIsStoredMeanwhile(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("cancelrace")
	prod := newProducer(t, ctx, js, q)
	other := newProducer(t, ctx, js, q)
	in := newInspector(t, ctx, js, q)

	data, err := natsbroker.JSONCodec{}.Encode(taskpool.Task{ID: "x", Type: "mail"})
	require.NoError(t, err)
	msg := nats.NewMsg("taskpool.cancelrace.sched." + base64.RawURLEncoding.EncodeToString([]byte("x")))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, "x")
	msg.Header.Set("Nats-Schedule", "@at "+time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano))
	msg.Header.Set("Nats-Schedule-Target", "taskpool.cancelrace.task.default")
	_, err = js.PublishMsg(ctx, msg)
	require.NoError(t, err)

	prod.WrapTasks(func(st jetstream.Stream) jetstream.Stream {
		return &afterDelete{Stream: st, after: func() {
			require.NoError(t, other.Schedule(ctx, "x", "@every 1h", taskpool.Task{Type: "report"}))
		}}
	})
	require.NoError(t, natsbroker.NewClient(prod).Cancel("x"))
	assert.Equal(t, []string{"x periodic @every 1h"}, kinds(t, in), "the schedule stored meanwhile is kept")
}

// Inspector.Schedules computes NextRun as the server runs the schedule:
// an @every interval from the time it was registered rounded to the
// second (the server counts each tick from the last one rounded to the
// second), and @hourly and @daily in the schedule's time zone.
func TestInspectorSchedulesNextRunAsTheServerRunsIt(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("nextrun")
	prod := newProducer(t, ctx, js, q)
	in := newInspector(t, ctx, js, q)
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	require.NoError(t, err)
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	require.NoError(t, err)

	st, err := js.Stream(ctx, "TASKPOOL_nextrun")
	require.NoError(t, err)
	require.NoError(t, prod.Schedule(ctx, "every", "@every 2s", taskpool.Task{Type: "ping"}))
	require.NoError(t, prod.Schedule(ctx, "daily", "CRON_TZ=Asia/Tokyo @daily", taskpool.Task{Type: "report"}))
	require.NoError(t, prod.Schedule(ctx, "hourly", "CRON_TZ=Asia/Kolkata @hourly", taskpool.Task{Type: "report"}))
	// The first tick (no consumer takes it) says when the server fires
	// next.
	var tick *jetstream.RawStreamMsg
	require.Eventually(t, func() bool {
		tick, err = st.GetLastMsgForSubject(ctx, "taskpool.nextrun.task.default")
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "the first tick")
	next, err := time.Parse(time.RFC3339Nano, tick.Header.Get("Nats-Schedule-Next"))
	require.NoError(t, err)

	before := time.Now()
	got, err := in.Schedules(ctx, false)
	require.NoError(t, err)
	byID := map[string]natsbroker.Schedule{}
	for _, s := range got {
		byID[s.ID] = s
	}
	// The next tick, or the one after if the server fired meanwhile.
	every := byID["every"].NextRun
	assert.True(t, every.Equal(next) || every.Equal(next.Add(2*time.Second)), "NextRun %v, the server's next %v", every, next)

	daily := byID["daily"].NextRun.In(tokyo)
	assert.Equal(t, "00:00:00", daily.Format(time.TimeOnly), "midnight in Tokyo: %v", daily)
	assert.WithinRange(t, daily, before, before.Add(24*time.Hour))
	hourly := byID["hourly"].NextRun.In(kolkata)
	assert.Equal(t, "00:00", hourly.Format("04:05"), "on the hour in Kolkata (UTC+5:30): %v", hourly)
	assert.WithinRange(t, hourly, before, before.Add(time.Hour))
}

// QueueInfo.Scheduled counts the schedules the server holds; a task
// delayed on the client side (WithClientSideDelays, or a server without
// schedules) is stored as a queued task and counted in its priority's
// Pending until it is due, as QueueInfo's doc says. Inspector.Schedules
// does not list it either.
func TestQueueInfoCountsClientSideDelaysAsPending(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("clientdelay")
	prod := newProducer(t, ctx, js, q, natsbroker.WithClientSideDelays())
	in := newInspector(t, ctx, js, q)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "later", Type: "mail"}, natsbroker.Delay(time.Hour))

	info, err := in.Queue(ctx)
	require.NoError(t, err)
	assert.Zero(t, info.Scheduled, "not a schedule the server holds")
	assert.EqualValues(t, 1, info.Priorities[1].Pending, "a queued task until it is due")
	got, err := in.Schedules(ctx, true)
	require.NoError(t, err)
	assert.Empty(t, got)
}

// A delayed task enqueued with an Attempt above 1 is listed with it, as
// in process Inspect lists a delayed task's Attempt: the payload does not
// carry it, Taskpool-First-Attempt does.
func TestInspectorSchedulesDelayedAttempt(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	q := natsbroker.WithQueue("delayedattempt")
	prod := newProducer(t, ctx, js, q)
	in := newInspector(t, ctx, js, q)
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "third", Type: "mail", Attempt: 3}, natsbroker.Delay(time.Hour))
	mustEnqueue(t, ctx, prod, taskpool.Task{ID: "first", Type: "mail"}, natsbroker.Delay(2*time.Hour))

	got, err := in.Schedules(ctx, true)
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, "third", got[0].ID)
	assert.Equal(t, 3, got[0].Task.Attempt)
	assert.Equal(t, "first", got[1].ID)
	assert.Equal(t, 1, got[1].Task.Attempt)
}

// After an outage of the server across more than an interval of an
// "@every" schedule, the server fires the tick it missed when it is back
// and, that firing being more than an interval late, counts the next tick
// from it, rounded to the second, not from the registration: its next
// tick (the Nats-Schedule-Next of the tick it stores) is an interval
// after a time after the outage. It keeps that state to itself (the
// ticks that say it are consumed), so Inspector.Schedules' NextRun stays
// on the grid of the registration, as Schedule.NextRun's doc says: after
// now and within one interval, Registered rounded to the second plus a
// whole number of intervals.
func TestInspectorSchedulesNextRunAfterAnOutage(t *testing.T) {
	t.Parallel()
	srv, restart := startRestartable(t)
	nc, js := connect(t, srv.URL())
	ctx := ctxT(t)
	q := natsbroker.WithQueue("nextrunoutage")
	prod := newProducer(t, ctx, js, q)
	in, err := natsbroker.NewInspector(ctx, js, q)
	require.NoError(t, err)
	const every = 2 * time.Second
	require.NoError(t, prod.Schedule(ctx, "every", "@every 2s", taskpool.Task{Type: "ping"}))
	const subject = "taskpool.nextrunoutage.task.default"
	lastTick := func() (*jetstream.RawStreamMsg, error) {
		st, err := js.Stream(ctx, "TASKPOOL_nextrunoutage")
		if err != nil {
			return nil, err
		}
		return st.GetLastMsgForSubject(ctx, subject)
	}
	// No consumer takes the ticks: the last one says when the server
	// fires next.
	var tick *jetstream.RawStreamMsg
	require.Eventually(t, func() bool {
		tick, err = lastTick()
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "the first tick")
	next, err := time.Parse(time.RFC3339Nano, tick.Header.Get("Nats-Schedule-Next"))
	require.NoError(t, err)

	// Down from before the next tick until more than an interval after
	// it: the server fires it more than an interval late.
	srv.Shutdown()
	require.Eventually(t, func() bool { return !nc.IsConnected() }, 5*time.Second, 5*time.Millisecond)
	outage := time.NewTimer(time.Until(next.Add(every + every/2)))
	<-outage.C
	back := time.Now()
	restart()
	require.Eventually(t, nc.IsConnected, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		tick, err = lastTick()
		return err == nil && tick.Time.After(back)
	}, 10*time.Second, 10*time.Millisecond, "a tick after the outage")
	serverNext, err := time.Parse(time.RFC3339Nano, tick.Header.Get("Nats-Schedule-Next"))
	require.NoError(t, err)
	// Fired between the restart and the time the tick was stored.
	assert.WithinRange(t, serverNext, back.Add(every-time.Second), tick.Time.Add(every+time.Second),
		"the server counts from its first tick after the outage")

	got, err := in.Schedules(ctx, false)
	require.NoError(t, err)
	require.Len(t, got, 1)
	s := got[0]
	now := time.Now()
	assert.True(t, s.NextRun.After(now.Add(-time.Second)) && !s.NextRun.After(now.Add(every)), "NextRun %v, now %v", s.NextRun, now)
	assert.Zero(t, s.NextRun.Sub(s.Registered.Round(time.Second))%every, "NextRun %v on the grid of the registration %v", s.NextRun, s.Registered)
	t.Logf("registered %v; missed %v; back %v; the server's next tick %v, NextRun %v", s.Registered, next, back, serverNext, s.NextRun)
}

// A periodic task with a unique key: in process an activation is skipped
// while the last one holds the key; on NATS the server emits the ticks and
// no producer takes the key, so Schedule refuses it (the root README's
// "Going distributed" lists the difference).
func TestSchedulePeriodicUniqueKeyIsRefused(t *testing.T) {
	t.Parallel()
	js, ctx := startJetStream(t)
	prod := newProducer(t, ctx, js, natsbroker.WithQueue("uniqsched"))
	task := taskpool.Task{Type: "report", UniqueKey: "one-at-a-time"}
	assert.ErrorIs(t, prod.Schedule(ctx, "nightly", "@every 1h", task), taskpool.ErrInvalidOption)
	assert.ErrorIs(t, natsbroker.NewClient(prod).SchedulePeriodic("nightly", taskpool.Every(time.Hour), task), taskpool.ErrInvalidOption)

	s, err := taskpool.New(taskpool.HandlerFunc(func(context.Context, taskpool.Task) error { return nil }))
	require.NoError(t, err)
	require.NoError(t, s.Start())
	defer func() { require.NoError(t, s.Stop(context.Background())) }()
	assert.NoError(t, s.SchedulePeriodic("nightly", taskpool.Every(time.Hour), task), "in process")
}
