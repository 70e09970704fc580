package ratelimit_test

import (
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/taskpool/taskpool/ratelimit"
)

// Example asks a limiter of 10 starts per second with a burst of 2 for
// four starts at the same moment, as the scheduler does when four tasks of
// one type reach the workers together, and then once more later.
func Example() {
	l, err := ratelimit.New(10, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for i := range 4 {
		fmt.Printf("task %d waits %v\n", i+1, l.Reserve(now))
	}
	// The four reservations used the slots up to now+200ms; one second
	// later the bucket is full again.
	fmt.Printf("1s later waits %v\n", l.Reserve(now.Add(time.Second)))
	// Output:
	// task 1 waits 0s
	// task 2 waits 0s
	// task 3 waits 100ms
	// task 4 waits 200ms
	// 1s later waits 0s
}

// ExampleEvery spaces starts a minute apart, with no burst beyond one.
func ExampleEvery() {
	l, err := ratelimit.Every(time.Minute, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	fmt.Println(l.Reserve(now), l.Reserve(now), l.Reserve(now.Add(30*time.Second)))
	// Output:
	// 0s 1m0s 1m30s
}

// ExampleNew shows the error for a burst that would allow no start.
func ExampleNew() {
	_, err := ratelimit.New(rate.Inf, 0)
	fmt.Println(err)
	// Output:
	// ratelimit: invalid limit: burst 0, want >= 1
}
