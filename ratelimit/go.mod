module github.com/taskpool/taskpool/ratelimit

go 1.24.0

replace github.com/taskpool/taskpool => ../

require (
	github.com/stretchr/testify v1.12.1
	github.com/taskpool/taskpool v0.0.0-00010101000000-000000000000
	go.uber.org/goleak v1.3.0
	golang.org/x/time v0.14.0
)

require go.yaml.in/yaml/v3 v3.0.5 // indirect
