package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// progPackage is the package whose BenchmarkProgram runs each program
// path with BPF_PROG_TEST_RUN.
const progPackage = "./pkg/datapath/ebpf/"

// progResult is one program path's cost.
type progResult struct {
	name string
	// nsPerPacket is the kernel's in-run time per packet; nsPerOp the
	// whole BPF_PROG_TEST_RUN syscall.
	nsPerPacket, nsPerOp float64
}

// progBenchArgs is the go test command line (also shown in the report).
func progBenchArgs(benchtime string) []string {
	return []string{"test", "-run", "^$", "-bench", "^BenchmarkProgram$", "-benchtime=" + benchtime, progPackage}
}

// runProgBench runs the program benchmark in the module at repo.
func runProgBench(ctx context.Context, repo, benchtime string) ([]progResult, error) {
	cmd := exec.CommandContext(ctx, "go", progBenchArgs(benchtime)...)
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(progBenchArgs(benchtime), " "), err, out)
	}
	return parseProgBench(string(out))
}

// benchLine is a line of BenchmarkProgram's output, e.g.
// "BenchmarkProgram/encap-vxlan-2  300000  1460 ns/op  52.30 ns/packet".
var benchLine = regexp.MustCompile(`^BenchmarkProgram/(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op\s+([\d.]+) ns/packet`)

// parseProgBench reads go test -bench output.
func parseProgBench(out string) ([]progResult, error) {
	var res []progResult
	for line := range strings.Lines(out) {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		op, _ := strconv.ParseFloat(m[2], 64) // the pattern admits only numbers
		pkt, _ := strconv.ParseFloat(m[3], 64)
		res = append(res, progResult{name: m[1], nsPerOp: op, nsPerPacket: pkt})
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("no BenchmarkProgram results in go test output:\n%s", out)
	}
	return res, nil
}
