package ebpf

import (
	"bufio"
	"compress/gzip"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ctRefresh is how long before its conntrack entry would expire a
// fast-path flow sends a packet through the stack, which refreshes the
// entry with netfilter's own timeouts. UDP's shortest replied timeout is
// 30 s, so such flows still spend most of their time on the fast path.
const ctRefresh = 10 * time.Second

// assumedHZ is used when the kernel's configuration cannot be read: the
// largest common CONFIG_HZ, so the refresh comes early rather than late.
const assumedHZ = 1000

// ctRefreshJiffies is ctRefresh in the kernel's jiffies.
func ctRefreshJiffies() uint32 {
	return uint32(ctRefresh.Seconds() * float64(kernelHZ()))
}

// kernelHZ reads CONFIG_HZ from /proc/config.gz or /boot/config-<release>.
func kernelHZ() int {
	if f, err := os.Open("/proc/config.gz"); err == nil {
		defer f.Close()
		if z, err := gzip.NewReader(f); err == nil {
			if hz := configHZ(z); hz > 0 {
				return hz
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		if f, err := os.Open("/boot/config-" + unix.ByteSliceToString(u.Release[:])); err == nil {
			defer f.Close()
			if hz := configHZ(f); hz > 0 {
				return hz
			}
		}
	}
	return assumedHZ
}

// configHZ finds CONFIG_HZ=N in a kernel configuration; 0 if absent.
func configHZ(r io.Reader) int {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CONFIG_HZ="); ok {
			hz, _ := strconv.Atoi(v)
			return hz
		}
	}
	return 0
}
