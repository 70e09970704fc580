//go:build !unix

package bench

// processCPU is not measured on this platform: 0, and no cpu-ns/task.
func processCPU() int64 { return 0 }
