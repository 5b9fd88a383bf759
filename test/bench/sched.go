package main

import "strconv"

// Where the measuring processes run: the client (and, with veths, the
// receive processing its sends trigger in softirq up to the server's
// socket) on one CPU, the server on the other.
const (
	clientCPU = "0"
	serverCPU = "1"
)

// sched is how the measuring processes are scheduled.
type sched struct {
	// pin binds clients to clientCPU and servers to serverCPU (taskset).
	pin bool
	// nice is their nice value (0: unchanged). On a shared machine a
	// negative one keeps other load from deciding the results.
	nice int
}

// wrap returns the command line that runs name with args on cpu at the
// configured nice value.
func (s sched) wrap(cpu, name string, args []string) (string, []string) {
	argv := append([]string{name}, args...)
	if s.pin {
		argv = append([]string{"taskset", "-c", cpu}, argv...)
	}
	if s.nice != 0 {
		argv = append([]string{"nice", "-n", strconv.Itoa(s.nice)}, argv...)
	}
	return argv[0], argv[1:]
}
