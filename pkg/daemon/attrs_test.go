package daemon

import (
	"encoding/json"
	"net"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/iface"
	"github.com/weftnet/weft/pkg/netconf"
)

// TestLeaseAttrs: each family's half carries its public IP and VTEP MAC,
// in flannel's layout; a family that is off publishes nothing.
func TestLeaseAttrs(t *testing.T) {
	mac, _ := net.ParseMAC("3a:6b:5b:22:85:f1")
	mac6, _ := net.ParseMAC("3e:1a:a9:fe:f1:0a")
	info := datapath.Info{VtepMAC: mac, VtepMACv6: mac6}
	vxlan := netconf.Backend{Type: netconf.BackendVXLAN, VNI: 1}
	a4, a6 := netip.MustParseAddr("192.168.100.11"), netip.MustParseAddr("fd00:100::11")
	for _, tc := range []struct {
		name string
		sel  iface.Selected
		b    netconf.Backend
		want string
	}{
		{"dual stack (FLANNEL-COMPAT)", iface.Selected{IP: a4, PublicIP: a4, IPv6: a6, PublicIPv6: a6}, vxlan,
			`{"PublicIP":"192.168.100.11","PublicIPv6":"fd00:100::11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"3a:6b:5b:22:85:f1"},"BackendV6Data":{"VNI":1,"VtepMAC":"3e:1a:a9:fe:f1:0a"}}`},
		{"--public-ipv6 names another address", iface.Selected{IP: a4, PublicIP: a4, IPv6: a6, PublicIPv6: netip.MustParseAddr("2001:db8::11")}, vxlan,
			`{"PublicIP":"192.168.100.11","PublicIPv6":"2001:db8::11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"3a:6b:5b:22:85:f1"},"BackendV6Data":{"VNI":1,"VtepMAC":"3e:1a:a9:fe:f1:0a","TunnelIP":"fd00:100::11"}}`},
		{"IPv6 only", iface.Selected{IPv6: a6, PublicIPv6: a6}, vxlan,
			`{"PublicIP":"0.0.0.0","PublicIPv6":"fd00:100::11","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"3e:1a:a9:fe:f1:0a"}}`},
		{"IPv6 only host-gw", iface.Selected{IPv6: a6, PublicIPv6: a6}, netconf.Backend{Type: netconf.BackendHostGW},
			`{"PublicIP":"0.0.0.0","PublicIPv6":"fd00:100::11","BackendType":"host-gw"}`},
		{"IPv4 only", iface.Selected{IP: a4, PublicIP: a4}, vxlan,
			`{"PublicIP":"192.168.100.11","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"3a:6b:5b:22:85:f1"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := leaseAttrs(tc.sel, tc.b, info)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := json.Marshal(a); err != nil || string(got) != tc.want {
				t.Errorf("lease value\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}
