package wireguard

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
)

// userspace is a WireGuard device run by this process: a TUN device, the
// WireGuard implementation golang.zx2c4.com/wireguard and its UAPI socket,
// through which wgctrl configures it like a kernel device.
type userspace struct {
	dev  *device.Device
	uapi net.Listener
	ns   netns.NsHandle
	// done is closed when the UAPI accept loop has returned.
	done chan struct{}
}

// startUserspace creates the TUN device name in the calling thread's
// network namespace and runs WireGuard on it. Its UDP sockets are opened in
// that namespace too, whichever thread (re)opens them.
func startUserspace(name string, mtu int) (*userspace, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("get network namespace: %w", err)
	}
	t, err := tun.CreateTUN(name, mtu)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("create TUN device %s: %w", name, err)
	}
	logger := &device.Logger{
		Verbosef: func(format string, args ...any) { slog.Debug(fmt.Sprintf(format, args...), "device", name) },
		Errorf:   func(format string, args ...any) { slog.Warn(fmt.Sprintf(format, args...), "device", name) },
	}
	u := &userspace{
		dev:  device.NewDevice(t, nsBind{Bind: conn.NewDefaultBind(), ns: ns}, logger),
		ns:   ns,
		done: make(chan struct{}),
	}
	file, err := ipc.UAPIOpen(name)
	if err == nil {
		u.uapi, err = ipc.UAPIListen(name, file)
		_ = file.Close() // the listener holds its own copy
	}
	if err != nil {
		u.dev.Close()
		ns.Close()
		return nil, fmt.Errorf("open UAPI socket %s: %w", socketPath(name), err)
	}
	go u.serve()
	if err := u.dev.Up(); err != nil {
		return nil, errors.Join(fmt.Errorf("start userspace wireguard on %s: %w", name, err), u.close())
	}
	return u, nil
}

// serve answers UAPI connections until the listener is closed.
func (u *userspace) serve() {
	defer close(u.done)
	for {
		c, err := u.uapi.Accept()
		if err != nil {
			return
		}
		go u.dev.IpcHandle(c)
	}
}

// close stops the device (removing its TUN link) and the UAPI socket.
func (u *userspace) close() error {
	err := u.uapi.Close()
	<-u.done
	u.dev.Close()
	u.ns.Close()
	if err != nil {
		return fmt.Errorf("close UAPI socket: %w", err)
	}
	return nil
}

// nsBind is a conn.Bind that opens its sockets in network namespace ns: the
// device reopens them from whichever goroutine handles a port change or a
// link coming up.
type nsBind struct {
	conn.Bind
	ns netns.NsHandle
}

// Open opens the sockets on a thread inside b.ns; the thread is discarded
// afterwards rather than returned to the scheduler in that namespace.
func (b nsBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	type result struct {
		fns  []conn.ReceiveFunc
		port uint16
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		var r result
		if r.err = netns.Set(b.ns); r.err == nil {
			r.fns, r.port, r.err = b.Bind.Open(port)
		} else {
			r.err = fmt.Errorf("enter network namespace of the wireguard device: %w", r.err)
		}
		ch <- r
	}()
	r := <-ch
	return r.fns, r.port, r.err
}
