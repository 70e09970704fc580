package cron_test

import (
	"fmt"
	"time"

	"github.com/taskpool/taskpool/cron"
)

// Example lists the next activations of a weekday-morning schedule in New
// York across the start of daylight saving time on 9 March 2025: 09:00
// local time is 14:00 UTC before it and 13:00 UTC after.
func Example() {
	s, err := cron.Parse("CRON_TZ=America/New_York 0 9 * * MON-FRI")
	if err != nil {
		fmt.Println(err)
		return
	}
	t := time.Date(2025, 3, 6, 12, 0, 0, 0, time.UTC) // a Thursday
	for range 4 {
		t = s.Next(t)
		fmt.Println(t.Format("Mon 2006-01-02 15:04 MST"))
	}
	// Output:
	// Thu 2025-03-06 14:00 UTC
	// Fri 2025-03-07 14:00 UTC
	// Mon 2025-03-10 13:00 UTC
	// Tue 2025-03-11 13:00 UTC
}

// ExampleParseInLocation reads a descriptor in Tokyo time and an
// expression that names its own zone, which wins over the location given.
func ExampleParseInLocation() {
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		fmt.Println(err)
		return
	}
	after := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, expr := range []string{"@daily", "CRON_TZ=Europe/Paris @daily"} {
		s, err := cron.ParseInLocation(expr, tokyo)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%-28s %s\n", expr, s.Next(after).Format(time.RFC3339))
	}
	// Output:
	// @daily                       2025-01-01T15:00:00Z
	// CRON_TZ=Europe/Paris @daily  2025-01-01T23:00:00Z
}

// ExampleParse shows the error for an expression with a seconds field,
// which the five-field syntax does not have.
func ExampleParse() {
	_, err := cron.Parse("0 0 9 * * *")
	fmt.Println(err)
	// Output:
	// cron: invalid expression "0 0 9 * * *": expected exactly 5 fields, found 6: [0 0 9 * * *]
}
