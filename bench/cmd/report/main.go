// Command report turns the raw output of bench/run.sh into
// results/results.md and the charts results/throughput.{svg,png} and
// results/latency.{svg,png}.
//
// Usage:
//
//	go run ./cmd/report -raw results/raw.txt -out results [-core DESC] [-duration D] [-rounds N]
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run() error {
	raw := flag.String("raw", "results/raw.txt", "raw go test -bench output")
	out := flag.String("out", "results", "directory for results.md and the charts")
	core := flag.String("core", "unknown", "the core module's commit and state")
	duration := flag.String("duration", "", "how long run.sh took")
	rounds := flag.String("rounds", "?", "how many interleaved rounds ran")
	contention := flag.String("contention", "", "run.sh's record of the CPU other processes used, if any")
	flag.Parse()

	f, err := os.Open(*raw)
	if err != nil {
		return err
	}
	res, err := parse(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", *raw, err)
	}
	if len(res.workloads) == 0 {
		return fmt.Errorf("%s: no benchmark results", *raw)
	}

	var charts []string
	if p, err := throughputChart(res); err == nil {
		if err := save(p, throughputWidth, throughputHeight, filepath.Join(*out, "throughput.svg"), filepath.Join(*out, "throughput.png")); err != nil {
			return err
		}
		charts = append(charts, "throughput.svg")
	}
	if p, err := latencyChart(res); err == nil {
		if err := save(p, latencyWidth, latencyHeight, filepath.Join(*out, "latency.svg"), filepath.Join(*out, "latency.png")); err != nil {
			return err
		}
		charts = append(charts, "latency.svg")
	}

	m := machine{
		goVersion: goVersion(),
		goosArch:  or(res.goos, runtime.GOOS) + "/" + or(res.goarch, runtime.GOARCH),
		cpuModel:  cpuModel(),
		cpuGo:     res.cpu,
		nproc:     runtime.NumCPU(),
		date:      time.Now().UTC().Format("2006-01-02 15:04 MST"),
		core:      *core,
		duration:  *duration,
		rounds:    *rounds,
		charts:    charts,
	}
	if *contention != "" {
		f, err := os.Open(*contention)
		if err != nil {
			return err
		}
		m.others, err = parseContention(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", *contention, err)
		}
	}
	var md bytes.Buffer
	if err := writeMarkdown(&md, res, m); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(*out, "results.md"), md.Bytes(), 0o644)
}

// parseContention reads run.sh's contention.txt: per line a round, a
// workload, the wall and own CPU seconds and the percentage of the
// machine's CPU that other processes used. It returns the percentages by
// workload, in order of first appearance.
func parseContention(r io.Reader) ([]contention, error) {
	var out []contention
	index := map[string]int{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 5 {
			return nil, fmt.Errorf("line %d: want 5 fields, have %d", line, len(f))
		}
		pct, err := strconv.ParseFloat(f[4], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		i, ok := index[f[1]]
		if !ok {
			i = len(out)
			index[f[1]] = i
			out = append(out, contention{workload: f[1]})
		}
		out[i].pct = append(out[i].pct, pct)
	}
	return out, sc.Err()
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func goVersion() string {
	out, err := exec.Command("go", "version").Output()
	if err != nil {
		return runtime.Version()
	}
	return strings.TrimSpace(string(out))
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
