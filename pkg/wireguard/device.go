package wireguard

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// DeviceName is the IPv4 wireguard device's name and DeviceNameV6 the IPv6
// one's, as flannel names them (its Mode "separate").
const (
	DeviceName   = "flannel-wg"
	DeviceNameV6 = "flannel-wg-v6"
)

// SocketDir is where userspace WireGuard implementations (and wgctrl, and
// `wg`) keep their UAPI sockets.
const SocketDir = "/var/run/wireguard"

// Device is a WireGuard device this process configures: the kernel's, which
// lives on without the process, or a userspace one run by this process.
type Device struct {
	name string
	// user is the userspace device; nil for a kernel device.
	user *userspace
}

// Ensure returns the WireGuard device name in the network namespace of the
// calling thread, up with MTU mtu, working through h. It keeps dev (what an
// earlier call returned, or nil) while its link exists, adopts a kernel
// device, and otherwise creates one: the kernel's when the kernel can,
// else the userspace implementation run by this process, logging which and
// why.
func Ensure(h *netlink.Handle, dev *Device, name string, mtu int) (*Device, error) {
	link, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case err == nil && dev != nil:
		return up(h, dev, mtu)
	case errors.As(err, &notFound):
		if dev != nil {
			slog.Warn("wireguard device disappeared: creating it again", "device", name)
			if err := dev.Close(); err != nil {
				slog.Warn("stop vanished wireguard device", "device", name, "err", err)
			}
		}
	case err != nil:
		return nil, fmt.Errorf("find %s: %w", name, err)
	case link.Type() == "wireguard":
		slog.Info("adopted kernel wireguard device", "device", name)
		return up(h, &Device{name: name}, mtu)
	default:
		// A userspace device of a process that is gone leaves no link: this
		// is some other device under our name.
		slog.Warn("replacing a device that is not wireguard", "device", name, "type", link.Type())
		if err := h.LinkDel(link); err != nil {
			return nil, fmt.Errorf("delete %s: %w", name, err)
		}
	}
	kerr := h.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}})
	if kerr == nil {
		slog.Info("created kernel wireguard device", "device", name, "implementation", "kernel")
		return up(h, &Device{name: name}, mtu)
	}
	slog.Info("kernel cannot create wireguard devices: running the userspace implementation in weftd",
		"device", name, "implementation", "userspace (golang.zx2c4.com/wireguard)", "reason", kerr.Error())
	user, err := startUserspace(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("kernel wireguard unavailable (%v) and userspace device failed: %w", kerr, err)
	}
	return up(h, &Device{name: name, user: user}, mtu)
}

// up sets dev's MTU and brings it up.
func up(h *netlink.Handle, dev *Device, mtu int) (*Device, error) {
	link, err := h.LinkByName(dev.name)
	if err == nil && link.Attrs().MTU != mtu {
		err = h.LinkSetMTU(link, mtu)
	}
	if err == nil && link.Attrs().Flags&unix.IFF_UP == 0 {
		err = h.LinkSetUp(link)
	}
	if err != nil {
		_ = dev.Close()
		return nil, fmt.Errorf("bring up %s with MTU %d: %w", dev.name, mtu, err)
	}
	return dev, nil
}

// Userspace reports whether dev is run by this process.
func (dev *Device) Userspace() bool { return dev.user != nil }

// Configure applies cfg to the device with wgctrl (the same calls for a
// kernel and a userspace device).
func (dev *Device) Configure(cfg wgtypes.Config) error {
	c, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("configure %s: open wgctrl: %w", dev.name, err)
	}
	defer c.Close()
	if err := c.ConfigureDevice(dev.name, cfg); err != nil {
		return fmt.Errorf("configure %s: %w", dev.name, err)
	}
	return nil
}

// Peers reads the device's peers with wgctrl.
func (dev *Device) Peers() ([]wgtypes.Peer, error) {
	return Peers(dev.name)
}

// Peers reads the peers of the WireGuard device name with wgctrl.
func Peers(name string) ([]wgtypes.Peer, error) {
	c, err := wgctrl.New()
	if err != nil {
		return nil, fmt.Errorf("read %s: open wgctrl: %w", name, err)
	}
	defer c.Close()
	d, err := c.Device(name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return d.Peers, nil
}

// Close stops a userspace device (its link goes with it: it cannot outlive
// the process) and leaves a kernel device in place.
func (dev *Device) Close() error {
	if dev.user == nil {
		return nil
	}
	slog.Info("stopping userspace wireguard device: it cannot outlive weftd, traffic to peers stops until weftd runs again",
		"device", dev.name)
	err := dev.user.close()
	dev.user = nil
	return err
}

// Delete stops dev if it is a userspace one, and removes the device name
// (kernel or left by others) and its UAPI socket. dev may be nil.
func Delete(h *netlink.Handle, dev *Device, name string) error {
	var errs []error
	if dev != nil {
		errs = append(errs, dev.Close())
	}
	link, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
	case err != nil:
		errs = append(errs, fmt.Errorf("find %s: %w", name, err))
	default:
		if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete %s: %w", name, err))
		} else {
			slog.Info("deleted device", "device", name)
		}
	}
	if err := os.Remove(socketPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove UAPI socket of %s: %w", name, err))
	}
	return errors.Join(errs...)
}

// socketPath is the UAPI socket of the userspace device name.
func socketPath(name string) string { return filepath.Join(SocketDir, name+".sock") }
