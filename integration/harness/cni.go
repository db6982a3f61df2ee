package harness

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CNIBinDir is where Debian's containernetworking-plugins installs the plugins (bridge, host-local, loopback).
const CNIBinDir = "/usr/lib/cni"

// cniResultsDir is where libcni (in containerd's CRI) caches each attachment's result: <network>-<pod id>-<ifname>.
const cniResultsDir = "/var/lib/cni/results"

// CNINetwork is the bridge network of one daemon's pods: a network name, a bridge and a /24 of its own, so that
// daemons of concurrent test runs never share one, and host-local's allocations kept in the daemon's directory.
// No gateway, no masquerading: the pods reach each other, and nothing on the host changes but the bridge.
type CNINetwork struct {
	Name    string // the network's name in its conflist
	Bridge  string // the bridge's interface name (at most 15 bytes)
	Subnet  string // 10.x.y.0/24, overlapping no address of the host
	ConfDir string // CRI's conf_dir, holding the conflist
	IPAMDir string // host-local's dataDir
}

// newCNINetwork writes the conflist of a network named after suffix (8 hex digits) into dir/cni-conf.
func newCNINetwork(dir, suffix string) (*CNINetwork, error) {
	subnet, err := freeSubnet()
	if err != nil {
		return nil, err
	}
	n := &CNINetwork{
		Name: "podv2-it-" + suffix, Bridge: "pv2br-" + suffix, Subnet: subnet,
		ConfDir: filepath.Join(dir, "cni-conf"), IPAMDir: filepath.Join(dir, "cni-ipam"),
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       n.Name,
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": n.Bridge, "isGateway": false, "ipMasq": false,
			"ipam": map[string]any{"type": "host-local", "dataDir": n.IPAMDir, "ranges": [][]map[string]string{{{"subnet": n.Subnet}}}},
		}},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(n.ConfDir, 0o755); err != nil {
		return nil, err
	}
	return n, os.WriteFile(filepath.Join(n.ConfDir, "10-"+n.Name+".conflist"), b, 0o644)
}

// freeSubnet picks a random 10.x.y.0/24 that holds no address of the host's interfaces.
func freeSubnet() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for range 100 {
		_, cand, _ := net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", 100+rand.IntN(100), rand.IntN(256)))
		free := true
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && (cand.Contains(ipn.IP) || ipn.Contains(cand.IP)) {
				free = false
			}
		}
		if free {
			return cand.String(), nil
		}
	}
	return "", fmt.Errorf("no free 10.x.y.0/24 subnet found for the CNI bridge")
}

// PodLeftovers lists what the network still holds for pod (sandbox) id: libcni's cached result and host-local's
// address allocations.
func (n *CNINetwork) PodLeftovers(id string) []string {
	var left []string
	cached, _ := filepath.Glob(filepath.Join(cniResultsDir, n.Name+"-"+id+"-*"))
	for _, f := range cached {
		left = append(left, "CNI result cache "+f)
	}
	ents, _ := os.ReadDir(filepath.Join(n.IPAMDir, n.Name))
	for _, e := range ents {
		p := filepath.Join(n.IPAMDir, n.Name, e.Name())
		if b, err := os.ReadFile(p); err == nil && strings.HasPrefix(string(b), id) {
			left = append(left, "host-local allocation "+p)
		}
	}
	return left
}

// BridgePorts lists the interfaces attached to the bridge (a pod's veth stays until its network is torn down).
func (n *CNINetwork) BridgePorts() []string {
	ents, _ := os.ReadDir(filepath.Join("/sys/class/net", n.Bridge, "brif"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// remove deletes the bridge and the network's cached results; it lists the cached results it found (leftovers) and a
// bridge it could not delete.
func (n *CNINetwork) remove() []string {
	var removed []string
	if Exists(filepath.Join("/sys/class/net", n.Bridge)) {
		if out, err := exec.Command("ip", "link", "del", n.Bridge).CombinedOutput(); err != nil {
			removed = append(removed, fmt.Sprintf("bridge %s (ip link del: %v %s)", n.Bridge, err, out))
		}
	}
	cached, _ := filepath.Glob(filepath.Join(cniResultsDir, n.Name+"-*"))
	for _, f := range cached {
		os.Remove(f)
		removed = append(removed, "CNI result cache "+f)
	}
	return removed
}
