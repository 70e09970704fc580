//go:build race

package taskpool_test

// raceEnabled: the race detector is on, which makes frames bigger.
const raceEnabled = true
