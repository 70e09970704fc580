module github.com/taskpool/taskpool/cron

go 1.24

replace github.com/taskpool/taskpool => ../

require (
	github.com/robfig/cron/v3 v3.0.1
	github.com/stretchr/testify v1.12.1
	github.com/taskpool/taskpool v0.0.0-00010101000000-000000000000
	go.uber.org/goleak v1.3.0
)

require go.yaml.in/yaml/v3 v3.0.5 // indirect
