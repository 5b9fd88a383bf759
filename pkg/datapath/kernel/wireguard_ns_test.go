package kernel_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/pkg/datapath"
	"github.com/weftnet/weft/pkg/wireguard"
	"github.com/weftnet/weft/test/testns"
)

// wgNode is a cluster node whose datapath runs in an agent.
type wgNode struct {
	*testNode
	agent *agent
	// cluster is the test that owns the cluster: agents live as long.
	cluster *testing.T
}

// start starts n's agent and sets its datapath up with its subnets.
func (n *wgNode) start(t *testing.T) {
	t.Helper()
	n.agent = startAgent(t, n.cluster, n.ns.Name)
	var subnets []netip.Prefix
	for _, p := range n.wgPeers() {
		subnets = append(subnets, p.Subnet)
	}
	n.info = n.agent.must(t, agentRequest{Op: "setup", Node: n.node, Subnets: subnets}).Info
}

// restart closes n's datapath, ends its agent and starts a new one.
func (n *wgNode) restart(t *testing.T) {
	t.Helper()
	n.agent.must(t, agentRequest{Op: "close"})
	n.agent.stop(t)
	n.start(t)
}

// wgPeers is n as its lease describes it to others: a peer per family,
// both with the node's one public key.
func (n *wgNode) wgPeers() []datapath.Peer {
	peers := n.testNode.peers()
	for i := range peers {
		peers[i].VtepMAC, peers[i].PublicKey = nil, n.info.PublicKey
	}
	return peers
}

// wgPeer is n's IPv4 half as its lease describes it to others.
func (n *wgNode) wgPeer() datapath.Peer { return n.wgPeers()[0] }

// traffic reads n's counters, failing t unless all are the wireguard
// devices', and returns the rx and tx ones.
func (n *wgNode) traffic(t *testing.T) (rx, tx datapath.Counter) {
	t.Helper()
	for _, c := range n.agent.must(t, agentRequest{Op: "stats"}).Stats {
		if c.Backend != "wireguard-kernel" {
			t.Errorf("counter backend %q, want wireguard-kernel", c.Backend)
		}
		switch c.Direction {
		case "rx":
			rx = c
		case "tx":
			tx = c
		}
	}
	return rx, tx
}

// peers reads the peers of n's device flannel-wg with wgctrl.
func (n *wgNode) peers(t *testing.T) []agentPeer {
	t.Helper()
	return n.devicePeers(t, wireguard.DeviceName)
}

// devicePeers reads the peers of n's wireguard device dev with wgctrl,
// sorted by endpoint.
func (n *wgNode) devicePeers(t *testing.T, dev string) []agentPeer {
	t.Helper()
	peers := n.agent.must(t, agentRequest{Op: "peers", Device: dev}).Peers
	slices.SortFunc(peers, func(a, b agentPeer) int { return strings.Compare(a.Endpoint, b.Endpoint) })
	return peers
}

// wgCluster is newCluster for wireguard with a key file per node and a PSK.
func wgCluster(t *testing.T) []*wgNode {
	t.Helper()
	return wgStackCluster(t, ipv4Only)
}

// wgStackCluster is newStackCluster for wireguard with a key file per node
// and a PSK.
func wgStackCluster(t *testing.T, st stack) []*wgNode {
	t.Helper()
	psk, err := wgtypes.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var nodes []*wgNode
	for i, n := range newStackCluster(t, datapath.ModeWireGuard, false, st) {
		n.node.WireGuard = datapath.WireGuard{PSK: psk.String(), KeyFile: filepath.Join(dir, fmt.Sprint(i+1), "wgkey")}
		nodes = append(nodes, &wgNode{testNode: n, cluster: t})
	}
	return nodes
}

// syncAll syncs every node with the others.
func syncAll(t *testing.T, nodes []*wgNode) {
	t.Helper()
	for _, n := range nodes {
		var peers []datapath.Peer
		for _, o := range nodes {
			if o != n {
				peers = append(peers, o.wgPeers()...)
			}
		}
		n.given = peers
		n.agent.must(t, agentRequest{Op: "sync", Peers: peers})
	}
}

func TestWireGuard(t *testing.T) {
	nodes := wgCluster(t)
	for _, n := range nodes {
		n.start(t)
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	t.Run("key file", func(t *testing.T) {
		for _, n := range nodes {
			st, err := os.Stat(n.node.WireGuard.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o400 {
				t.Errorf("%s: key file mode %v, want 0400", n.ns.Name, st.Mode().Perm())
			}
			data, err := os.ReadFile(n.node.WireGuard.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			key, err := wgtypes.ParseKey(string(data))
			if err != nil || key.PublicKey().String() != n.info.PublicKey {
				t.Errorf("%s: key file does not hold the private key of public key %s (%v)", n.ns.Name, n.info.PublicKey, err)
			}
			if n.info.MTU != 1500-80 {
				t.Errorf("%s: MTU %d, want uplink MTU - 80", n.ns.Name, n.info.MTU)
			}
		}
	})
	syncAll(t, nodes)
	for _, n := range nodes {
		for _, o := range nodes {
			if o != n {
				n.ping(t, o.podIP)
			}
		}
	}

	t.Run("device", func(t *testing.T) {
		got := n1.peers(t)
		want := []agentPeer{
			{PublicKey: n2.info.PublicKey, Endpoint: "192.168.10.2:51820", AllowedIPs: []string{"10.244.2.0/24"}},
			{PublicKey: n3.info.PublicKey, Endpoint: "192.168.20.3:51820", AllowedIPs: []string{"10.244.3.0/24"}},
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("peers of %s:\n%v\nwant\n%v", n1.ns.Name, got, want)
		}
		out := n1.ns.MustRun(t, "ip", "-4", "route", "show", "dev", "flannel-wg")
		if !strings.Contains(out, "10.244.0.0/16") || !strings.Contains(out, "scope link") {
			t.Errorf("routes on flannel-wg: %q, want 10.244.0.0/16 scope link", out)
		}
		out = n1.ns.MustRun(t, "ip", "-4", "addr", "show", "dev", "flannel-wg")
		if !strings.Contains(out, "10.244.1.0/32") {
			t.Errorf("addresses of flannel-wg: %q, want 10.244.1.0/32", out)
		}
	})

	t.Run("encrypted on the underlay", func(t *testing.T) {
		marker := []byte("WEFT-MARKER-" + strings.Repeat("cleartext-", 20))
		underlay := startCapture(t, n2.ns, "eth0")
		atPod := startCapture(t, n2.pod, "eth0")
		got := tcpTransfer(t, n1, n2, marker)
		if !bytes.Equal(got, marker) {
			t.Fatalf("pod %s received %q over TCP, want the marker", n2.podIP, got)
		}
		wire, pod := underlay.stop(t), atPod.stop(t)
		if !bytes.Contains(pod, marker) {
			t.Fatal("the capture at the receiving pod misses the marker: the capture does not work")
		}
		if bytes.Contains(wire, marker) {
			t.Error("the marker crossed the underlay in cleartext")
		}
		if n := underlay.count(t, "udp port 51820"); n == 0 {
			t.Error("no UDP 51820 traffic captured on the underlay")
		}
		if n := underlay.count(t, "tcp"); n != 0 {
			t.Errorf("%d cleartext TCP packets on the underlay", n)
		}
	})

	t.Run("stats", func(t *testing.T) {
		if _, tx := n1.traffic(t); tx.Packets == 0 {
			t.Error("no tx packets counted on flannel-wg")
		}
	})

	t.Run("restart keeps the key", func(t *testing.T) {
		before := n2.info.PublicKey
		n2.restart(t)
		if n2.info.PublicKey != before {
			t.Fatalf("public key changed on restart: %s, was %s", n2.info.PublicKey, before)
		}
		n2.agent.must(t, agentRequest{Op: "sync", Peers: n2.given})
		// The others keep their session with the stopped device until the
		// restarted node's first packet makes a new one (or their rekey
		// timeout does, 15s later): let it speak first.
		n2.ping(t, n1.podIP)
		n1.ping(t, n2.podIP)
	})

	t.Run("wrong key cannot inject", func(t *testing.T) {
		if got := udpTransfer(t, n3, n1, []byte("valid key")); string(got) != "valid key" {
			t.Fatalf("with its published key node 3 could not send: got %q", got)
		}
		// Node 3 comes back with another private key than the one it
		// published: the others still know the old public key.
		n3.agent.must(t, agentRequest{Op: "close"})
		n3.agent.stop(t)
		n3.node.WireGuard.KeyFile += ".other"
		published := n3.info.PublicKey
		n3.start(t)
		if n3.info.PublicKey == published {
			t.Fatal("a new key file gave the same key")
		}
		n3.agent.must(t, agentRequest{Op: "sync", Peers: n3.given})
		if got := udpTransfer(t, n3, n1, []byte("WEFT-INJECTED")); got != nil {
			t.Errorf("a node with the wrong private key delivered %q to pod %s", got, n1.podIP)
		}
	})

	t.Run("peer removed", func(t *testing.T) {
		n1.given = []datapath.Peer{n2.wgPeer()}
		n1.agent.must(t, agentRequest{Op: "apply", Changes: datapath.Changes{Removed: []datapath.PeerKey{n3.wgPeer().Key()}}})
		got := n1.peers(t)
		if len(got) != 1 || got[0].PublicKey != n2.info.PublicKey {
			t.Errorf("peers of %s after removing node 3: %v, want only node 2's", n1.ns.Name, got)
		}
		n1.ping(t, n2.podIP)
	})

	t.Run("cleanup", func(t *testing.T) {
		n2.agent.must(t, agentRequest{Op: "cleanup"})
		if out, err := n2.ns.Run("ip", "link", "show", "flannel-wg"); err == nil {
			t.Errorf("flannel-wg outlived Cleanup: %s", out)
		}
		if out := n2.ns.MustRun(t, "ip", "-4", "route"); strings.Contains(out, "10.244.0.0/16") {
			t.Errorf("the network route outlived Cleanup: %s", out)
		}
	})

	t.Run("close stops the userspace device", func(t *testing.T) {
		n1.agent.must(t, agentRequest{Op: "close"})
		n1.agent.stop(t)
		if out, err := n1.ns.Run("ip", "link", "show", "flannel-wg"); err == nil {
			t.Errorf("flannel-wg outlived its agent: %s", out)
		}
	})
}

// tcpTransfer sends data over TCP from src's pod to dst's pod and returns
// what dst's pod received.
func tcpTransfer(t *testing.T, src, dst *wgNode, data []byte) []byte {
	t.Helper()
	ln := inNS(t, dst.pod, func() (net.Listener, error) {
		return net.Listen("tcp", netip.AddrPortFrom(dst.podIP, 5001).String())
	})
	defer ln.Close()
	received := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- nil
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		received <- b
	}()
	c := inNS(t, src.pod, func() (net.Conn, error) {
		return net.DialTimeout("tcp", netip.AddrPortFrom(dst.podIP, 5001).String(), 10*time.Second)
	})
	_, err := c.Write(data)
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-received:
		return b
	case <-time.After(15 * time.Second):
		t.Fatal("TCP transfer did not finish within 15s")
		return nil
	}
}

// udpTransfer sends data in UDP datagrams from src's pod to dst's pod for
// up to 3 seconds and returns the first datagram dst's pod receives, or nil.
func udpTransfer(t *testing.T, src, dst *wgNode, data []byte) []byte {
	t.Helper()
	in := inNS(t, dst.pod, func() (net.PacketConn, error) {
		return net.ListenPacket("udp4", netip.AddrPortFrom(dst.podIP, 5002).String())
	})
	defer in.Close()
	out := inNS(t, src.pod, func() (net.PacketConn, error) {
		return net.ListenPacket("udp4", netip.AddrPortFrom(src.podIP, 0).String())
	})
	defer out.Close()
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst.podIP, 5002))
	deadline := time.Now().Add(3 * time.Second)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		if _, err := out.WriteTo(data, to); err != nil {
			t.Fatal(err)
		}
		_ = in.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := in.ReadFrom(buf); err == nil {
			return buf[:n]
		}
	}
	return nil
}

// inNS runs open (which opens a socket) in ns and returns its result,
// failing t on error.
func inNS[T any](t *testing.T, ns *testns.NS, open func() (T, error)) T {
	t.Helper()
	var v T
	if err := ns.Do(func() (err error) {
		v, err = open()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// tcpdump is a tcpdump running in a test namespace.
type tcpdump struct {
	cmd  *exec.Cmd
	file string
}

// startCapture captures every packet on dev in ns until stop.
func startCapture(t *testing.T, ns *testns.NS, dev string) *tcpdump {
	t.Helper()
	c := &tcpdump{file: filepath.Join(t.TempDir(), "capture.pcap")}
	c.cmd = exec.Command("ip", "netns", "exec", ns.Name, "tcpdump", "-n", "-U", "--immediate-mode", "-s0", "-Z", "root", "-i", dev, "-w", c.file)
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start tcpdump: %v", err)
	}
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	})
	listening := make(chan error, 1)
	go func() {
		r := bufio.NewReader(stderr)
		line, err := r.ReadString('\n')
		if err == nil && !strings.Contains(line, "listening on") {
			err = fmt.Errorf("tcpdump: %s", line)
		}
		listening <- err
		_, _ = io.Copy(io.Discard, r)
	}()
	select {
	case err := <-listening:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump did not start listening within 10s")
	}
	return c
}

// stop ends the capture and returns the capture file's bytes.
func (c *tcpdump) stop(t *testing.T) []byte {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		_ = c.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump did not stop within 10s")
	}
	data, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// count returns how many captured packets match the tcpdump filter.
func (c *tcpdump) count(t *testing.T, filter string) int {
	t.Helper()
	out, err := exec.Command("tcpdump", "-n", "-r", c.file, filter).Output()
	if err != nil {
		t.Fatalf("read capture: %v", err)
	}
	return strings.Count(string(out), "\n")
}
