package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskpool/taskpool"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestScrape runs tasks, one of which fails for good, and checks the
// Prometheus exposition of the run, outcome and scheduler metrics.
func TestScrape(t *testing.T) {
	reg := taskpool.NewRegistry()
	require.NoError(t, reg.HandleFunc("email", func(_ context.Context, tk taskpool.Task) error {
		if tk.ID == "bad" {
			return taskpool.SkipRetry(errors.New("no such mailbox"))
		}
		return nil
	}))
	a, err := newApp(reg)
	require.NoError(t, err)
	require.NoError(t, a.sched.Start())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, id := range []string{"a", "b", "bad"} {
		require.NoError(t, a.client.Submit(ctx, taskpool.Task{ID: id, Type: "email"}))
	}
	// Stop waits for the three tasks; the meter provider stays up until
	// a.stop, so the scrape comes between the two.
	require.NoError(t, a.sched.Stop(ctx))

	srv := httptest.NewServer(a.handler)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	text := string(body)

	// Prometheus names: dots become underscores, counters end in _total,
	// seconds get their unit; annotation units such as {task} are dropped.
	assert.Regexp(t, `(?m)^taskpool_task_started_total\{.*taskpool_task_type="email".*\} 3$`, text)
	assert.Regexp(t, `(?m)^taskpool_task_succeeded_total\{.*taskpool_task_type="email".*\} 2$`, text)
	assert.Regexp(t, `(?m)^taskpool_task_failed_total\{error_type="\*errors.errorString".*\} 1$`, text)
	assert.Regexp(t, `(?m)^messaging_process_duration_seconds_count\{messaging_operation_name="process",messaging_system="taskpool",.*\} 2$`, text)
	assert.Regexp(t, `(?m)^taskpool_task_completed_total\{.*taskpool_task_outcome="failed".*\} 1$`, text)
	assert.Regexp(t, `(?m)^taskpool_scheduler_submitted_total\{.*\} 3$`, text)
	assert.Regexp(t, `(?m)^taskpool_scheduler_failed_total\{.*\} 1$`, text)
	assert.Regexp(t, `(?m)^taskpool_scheduler_queued\{.*\} 0$`, text)
	assert.Regexp(t, `(?m)^# TYPE taskpool_scheduler_running gauge$`, text)
	assert.Regexp(t, `(?m)^taskpool_task_queue_wait_seconds_count\{.*taskpool_task_type="email".*\} 3$`, text)
	assert.Regexp(t, `(?m)^taskpool_task_dead_lettered_total\{.*taskpool_task_type="email".*\} 1$`, text)
	assert.Regexp(t, `(?m)^messaging_client_sent_messages_total\{.*taskpool_task_type="email".*\} 3$`, text)
	assert.Regexp(t, `(?m)^taskpool_scheduler_utilization(_ratio)?\{.*\} 0$`, text)

	require.NoError(t, a.stop(ctx))
}
