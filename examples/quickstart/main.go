// Command quickstart is the article's scenario done properly: two task
// types, several workers, tasks submitted from the main goroutine, and a
// clean stop that waits for every accepted task.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/taskpool/taskpool"
)

type email struct {
	To      string
	Subject string
}

func main() {
	reg := taskpool.NewRegistry()
	must(reg.HandleFunc("send_email", func(ctx context.Context, t taskpool.Task) error {
		e, err := taskpool.ParamsAs[email](t)
		if err != nil {
			return taskpool.SkipRetry(err) // bad params will not get better
		}
		time.Sleep(10 * time.Millisecond) // stands in for an SMTP call
		fmt.Printf("task %-12s sent %q to %s\n", t.ID, e.Subject, e.To)
		return nil
	}))
	must(reg.HandleFunc("resize_image", func(ctx context.Context, t taskpool.Task) error {
		path, err := taskpool.ParamsAs[string](t)
		if err != nil {
			return taskpool.SkipRetry(err)
		}
		time.Sleep(20 * time.Millisecond) // stands in for image work
		fmt.Printf("task %-12s resized %s\n", t.ID, path)
		t.SetResult(path + ".thumb")
		return nil
	}))

	s, err := taskpool.New(reg, taskpool.WithWorkers(3), taskpool.WithQueueSize(16))
	must(err)
	must(s.Start())

	ctx := context.Background()
	for i := range 4 {
		must(s.Submit(ctx, taskpool.Task{
			ID:     fmt.Sprintf("email-%d", i),
			Type:   "send_email",
			Params: email{To: fmt.Sprintf("user%d@example.com", i), Subject: "Welcome"},
		}))
	}
	thumb, err := s.SubmitFuture(ctx, taskpool.Task{ID: "image-0", Type: "resize_image", Params: "cat.png"})
	must(err)
	for i := 1; i < 3; i++ {
		must(s.Submit(ctx, taskpool.Task{ID: fmt.Sprintf("image-%d", i), Type: "resize_image", Params: fmt.Sprintf("photo%d.png", i)}))
	}

	// A task of an unknown type is refused at once, not lost later.
	err = s.Submit(ctx, taskpool.Task{Type: "fax"})
	fmt.Println("submit fax:", err)

	res, err := thumb.Wait(ctx)
	fmt.Println("image-0 result:", res, err)

	// Stop accepts nothing more, runs what was accepted, and returns when
	// every worker has exited.
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	must(s.Stop(stopCtx))
	st := s.Stats()
	fmt.Printf("done: %d submitted, %d succeeded, %d failed\n", st.Submitted, st.Succeeded, st.Failed)
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
