package dashboard_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskpool/taskpool"
)

// browser starts a headless Chromium for the test and returns its
// context, with a time limit. The test skips when Chromium is missing,
// unless TASKPOOL_BROWSER=required (as in CI), where it fails.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("TASKPOOL_BROWSER") == "required" {
			t.Fatalf("chromium not found and TASKPOOL_BROWSER=required: %v", err)
		}
		t.Skipf("chromium not found (install the chromium package, or set TASKPOOL_BROWSER=required to fail): %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 1180),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	// The first run starts the browser: no time limit on it, or the limit
	// would end the browser.
	require.NoError(t, chromedp.Do(bctx), "start chromium")
	ctx, cancelTimeout := context.WithTimeout(bctx, 60*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancelBrowser()
		cancelAlloc()
	})
	return ctx
}

// pageWatch watches the page: it collects console errors, uncaught exceptions
// and failed loads, and accepts every confirm dialog, sending its message
// on dialogs.
type pageWatch struct {
	mu      sync.Mutex
	errs    []string
	dialogs chan string
}

func watch(t *testing.T, ctx context.Context) *pageWatch {
	w := &pageWatch{dialogs: make(chan string, 4)}
	ctx, cancel := context.WithCancel(ctx)
	console := chromedp.Console(ctx)
	opening := chromedp.Events(ctx, page.JavascriptDialogOpening)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for m, err := range console {
			if err != nil {
				return // the context ended
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				w.mu.Lock()
				w.errs = append(w.errs, m.String()+" at "+m.URL)
				w.mu.Unlock()
			}
		}
	}()
	go func() {
		defer wg.Done()
		for ev, err := range opening {
			if err != nil {
				return
			}
			// A confirm blocks the click that opened it: answer here.
			_, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			if err != nil {
				return
			}
			w.dialogs <- ev.Message
		}
	}()
	t.Cleanup(func() {
		cancel() // ends both loops
		wg.Wait()
	})
	return w
}

func (w *pageWatch) errors() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.errs...)
}

// text returns the text of the element sel selects, once it has any. The
// page refills its tables on every refresh (every 200ms here), and a read
// that meets a table being refilled can find the row with no text, or
// lose the node it found: fresh-clone CI runs read "" for a periodic
// task's row that was there before and after, and once failed with "No
// node with given id found". Every element read here has text when
// rendered, so both are read again until the deadline.
func text(ctx context.Context, t *testing.T, sel string) string {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if s = strings.TrimSpace(s); err == nil && s != "" {
			return s
		}
		if time.Now().After(deadline) {
			require.NoError(t, err, sel)
			return s
		}
		// Poll again after the page's next refresh at the latest.
		select {
		case <-ctx.Done():
			return s
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// click clicks the element sel selects, trying again until the deadline
// if the node it found is gone before the click (a table refilled in
// between, as text explains): such a click fails before it dispatches any
// mouse event, so the element is clicked once.
func click(ctx context.Context, t *testing.T, sel string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel)))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			require.NoError(t, err, sel)
		}
		select {
		case <-ctx.Done():
			require.NoError(t, ctx.Err(), sel)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestBrowser loads the page in a real headless Chromium: no console
// errors, the numbers match Inspect, and requeueing the dead letter from
// the page (accepting the confirmation) makes the task run. With
// TASKPOOL_SCREENSHOT=FILE it also saves a screenshot of the page.
func TestBrowser(t *testing.T) {
	f := newFixture(t)
	ctx := browser(t)
	w := watch(t, ctx)

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(f.url),
		chromedp.WaitVisible(chromedp.CSS(`body[data-loaded="true"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#dead tr[data-id="poison-1"]`)),
	))

	in := f.s.Inspect()
	for i, p := range []string{"high", "default", "low"} {
		assert.Equal(t, strconv.Itoa(in.Queued[i]), text(ctx, t, `#queues tr[data-priority="`+p+`"] td.depth`), p)
	}
	assert.Equal(t, "1", text(ctx, t, `#queues tr[data-priority="high"] td.in-flight`))
	assert.Equal(t, strconv.Itoa(len(in.Running)), text(ctx, t, "#count-running"))
	assert.Equal(t, strconv.Itoa(len(in.Running)), text(ctx, t, "#total-running"))
	assert.Equal(t, strconv.Itoa(len(in.Delayed)), text(ctx, t, "#count-delayed"))
	assert.Equal(t, strconv.Itoa(len(in.Periodic)), text(ctx, t, "#count-periodic"))
	assert.Equal(t, strconv.Itoa(len(in.Dead)), text(ctx, t, "#count-dead"))
	assert.Contains(t, text(ctx, t, `#running tr[data-id="busy-1"]`), "block")
	assert.Contains(t, text(ctx, t, `#delayed tr[data-id="later-1"]`), "report")
	assert.Contains(t, text(ctx, t, `#periodic tr[data-id="hourly-report"]`), "report")
	dead := text(ctx, t, `#dead tr[data-id="poison-1"]`)
	assert.Contains(t, dead, in.Dead[0].Err.Error())
	assert.Contains(t, dead, `{"to":"a@example.com"}`)

	if file := os.Getenv("TASKPOOL_SCREENSHOT"); file != "" {
		screenshot(ctx, t, f, file)
	}

	click(ctx, t, `#dead tr[data-id="poison-1"] button.requeue`)
	select {
	case msg := <-w.dialogs:
		assert.Contains(t, msg, "Requeue dead letter poison-1")
	case <-ctx.Done():
		t.Fatal("no confirmation asked")
	}
	select {
	case id := <-f.ran:
		assert.Equal(t, "poison-1", id, "the requeued task ran")
	case <-ctx.Done():
		t.Fatal("the requeued task did not run")
	}
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#dead td.empty`))))
	assert.Equal(t, "0", text(ctx, t, "#count-dead"))
	assert.Empty(t, f.s.DeadLetters())
	assert.Empty(t, w.errors(), "console errors")
}

// screenshot puts some load on the scheduler until the charts have a
// shape, then saves a PNG of the page to file.
func screenshot(ctx context.Context, t *testing.T, f *fixture, file string) {
	t.Helper()
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](
			`(document.querySelector('#chart-throughput polyline')?.getAttribute('points') || '').split(' ').filter(Boolean).length`))
		require.NoError(t, err)
		if n >= 40 {
			break
		}
		<-tick.C
		for range 1 + i%7 + (i/10)%3*4 {
			require.NoError(t, f.s.Submit(ctx, taskpool.Task{Type: "report", ID: fmt.Sprintf("r%d-%d", i, n)}))
		}
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file, png, 0o644))
	t.Logf("screenshot saved to %s", file)
}
