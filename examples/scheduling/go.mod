module github.com/taskpool/taskpool/examples/scheduling

go 1.24.0

require (
	github.com/taskpool/taskpool v0.0.0
	github.com/taskpool/taskpool/cron v0.0.0
	github.com/taskpool/taskpool/ratelimit v0.0.0
)

require (
	github.com/robfig/cron/v3 v3.0.1 // indirect
	golang.org/x/time v0.14.0 // indirect
)

replace (
	github.com/taskpool/taskpool => ../..
	github.com/taskpool/taskpool/cron => ../../cron
	github.com/taskpool/taskpool/ratelimit => ../../ratelimit
)
