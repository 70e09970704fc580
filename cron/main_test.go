package cron_test

import (
	"testing"

	"go.uber.org/goleak"

	// The tests and examples name IANA zones; embedding the database keeps
	// them independent of the machine's /usr/share/zoneinfo. It is linked
	// into the test binary only, not into users' programs.
	_ "time/tzdata"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
