package sandbox

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/cgroup"
	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/pod/podproc"
)

// plan is what a sandbox is made of, decided from CRI's PodSandboxConfig or
// from the OCI spec `ctr sandboxes run` puts in the bundle, before anything
// is done.
type plan struct {
	// Namespaces: the pod's user and network namespaces (pod.Request), and
	// which others the pod's process makes.
	Namespaces             pod.Request
	NewIPC, NewUTS, NewPID bool
	// Hostname is set in the pod's UTS namespace and written to its
	// /etc/hostname.
	Hostname string
	Sysctls  []podproc.Sysctl
	// DNS, when set, makes the pod's /etc/resolv.conf; else the host's.
	DNS *dnsConfig
	// ShmSize is the size of the pod's /dev/shm; 0: the host's (hostIPC).
	ShmSize int64
	// CgroupParent is the pod's cgroup; "" for none.
	CgroupParent string
	Annotations  map[string]string
}

// defaultShmSize is the size of a pod's /dev/shm, as CRI makes it.
const defaultShmSize = 64 << 20

// errInvalid marks what the client asked wrongly: InvalidArgument.
var errInvalid = errors.New("invalid sandbox configuration")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, args...))
}

// planFromCRI decides a CRI pod: the network namespace is CRI's (netnsPath,
// set up by CNI), inside the user namespace that owns it for a
// user-namespaced pod; IPC, UTS and PID namespaces of the pod's own unless
// the pod uses the host's; CRI's default sysctls.
func planFromCRI(c *podSandboxConfig, netnsPath, hostHostname string) (*plan, error) {
	hostNet := c.NetworkMode == modeNode
	p := &plan{
		NewIPC:       c.IPCMode != modeNode,
		NewUTS:       !hostNet,
		NewPID:       c.PIDMode != modeNode,
		Hostname:     c.Hostname,
		CgroupParent: c.CgroupParent,
		Annotations:  c.Annotations,
	}
	if p.Hostname == "" || hostNet {
		p.Hostname = hostHostname
	}
	if c.Userns != nil {
		uids, err := idMappings("uid", c.Userns.UIDs)
		if err != nil {
			return nil, err
		}
		gids, err := idMappings("gid", c.Userns.GIDs)
		if err != nil {
			return nil, err
		}
		p.Namespaces.UIDMappings, p.Namespaces.GIDMappings = uids, gids
	}
	switch {
	case hostNet && c.Userns != nil:
		return nil, invalidf("pod %s/%s asks for a user namespace and the host network: containers could not mount sysfs", c.Namespace, c.Name)
	case hostNet:
	case netnsPath == "":
		return nil, invalidf("pod %s/%s has a network of its own but CRI named no network namespace (netns_path)", c.Namespace, c.Name)
	case c.Userns != nil:
		// CRI makes the network namespace inside a user namespace with
		// the pod's mappings: that is the pod's user namespace.
		p.Namespaces.NetPath, p.Namespaces.DeriveUser = netnsPath, true
	default:
		p.Namespaces.NetPath = netnsPath
	}
	if !c.DNS.empty() {
		for _, v := range slices.Concat(c.DNS.Servers, c.DNS.Searches, c.DNS.Options) {
			if strings.ContainsAny(v, "\n\x00") || strings.TrimSpace(v) == "" {
				return nil, invalidf("DNS config entry %q: empty, or holds a newline or NUL", v)
			}
		}
		dns := c.DNS
		p.DNS = &dns
	}
	if p.NewIPC {
		p.ShmSize = defaultShmSize
	}
	sysctls := maps.Clone(c.Sysctls)
	if sysctls == nil {
		sysctls = map[string]string{}
	}
	if !hostNet {
		// What CRI sets for a pause container (enable_unprivileged_ports
		// and enable_unprivileged_icmp, on by default), unless the pod sets
		// them itself. Gids beyond the pod's user namespace mapping cannot
		// be written, so no ping range for a user-namespaced pod.
		if _, ok := sysctls["net.ipv4.ip_unprivileged_port_start"]; !ok {
			sysctls["net.ipv4.ip_unprivileged_port_start"] = "0"
		}
		if _, ok := sysctls["net.ipv4.ping_group_range"]; !ok && c.Userns == nil {
			sysctls["net.ipv4.ping_group_range"] = "0 2147483647"
		}
	}
	var err error
	if p.Sysctls, err = checkSysctls(sysctls, !hostNet, p.NewIPC, p.NewUTS); err != nil {
		return nil, err
	}
	return p, nil
}

func (d dnsConfig) empty() bool {
	return len(d.Servers) == 0 && len(d.Searches) == 0 && len(d.Options) == 0
}

func idMappings(kind string, in []idMapping) ([]specs.LinuxIDMapping, error) {
	if len(in) == 0 {
		return nil, invalidf("user namespace without %s mappings", kind)
	}
	out := make([]specs.LinuxIDMapping, len(in))
	for i, m := range in {
		if m.Length == 0 {
			return nil, invalidf("%s mapping %d:%d of length 0", kind, m.ContainerID, m.HostID)
		}
		out[i] = specs.LinuxIDMapping{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Length}
	}
	return out, nil
}

// planFromSpec decides a sandbox from an OCI spec (ctr sandboxes run): its
// user and network namespaces as a pod's first container's (created and
// pinned, or adopted), and new IPC, UTS and PID namespaces where the spec
// lists them without a path.
func planFromSpec(spec *specs.Spec, hostHostname string) (*plan, error) {
	req, err := pod.Decide(spec)
	if err != nil {
		return nil, err
	}
	p := &plan{Namespaces: req, Hostname: hostHostname, Annotations: spec.Annotations}
	var sysctls map[string]string
	if l := spec.Linux; l != nil {
		for _, ns := range l.Namespaces {
			var flag *bool
			switch ns.Type {
			case specs.IPCNamespace:
				flag = &p.NewIPC
			case specs.UTSNamespace:
				flag = &p.NewUTS
			case specs.PIDNamespace:
				flag = &p.NewPID
			default:
				continue
			}
			if ns.Path != "" {
				return nil, invalidf("the sandbox's spec names %s namespace %s: a sandbox makes its own or uses the host's", ns.Type, ns.Path)
			}
			*flag = true
		}
		p.CgroupParent = l.CgroupsPath
		sysctls = l.Sysctl
	}
	if p.NewUTS && spec.Hostname != "" {
		p.Hostname = spec.Hostname
	}
	if p.NewIPC {
		p.ShmSize = defaultShmSize
	}
	if p.Sysctls, err = checkSysctls(sysctls, req.NewNet || req.NetPath != "", p.NewIPC, p.NewUTS); err != nil {
		return nil, err
	}
	return p, nil
}

// ipcSysctls are the sysctls of an IPC namespace besides fs.mqueue.*.
var ipcSysctls = []string{"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
	"kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}

// checkSysctls refuses a sysctl that is not of a namespace the pod has of
// its own: written from the pod's process, it would change the host's. It
// returns them sorted by key.
func checkSysctls(m map[string]string, ownNet, ownIPC, ownUTS bool) ([]podproc.Sysctl, error) {
	var out []podproc.Sysctl
	for _, key := range slices.Sorted(maps.Keys(m)) {
		k := strings.ReplaceAll(key, "/", ".")
		var ns string
		var own bool
		switch {
		case strings.HasPrefix(k, "net."):
			ns, own = "network", ownNet
		case slices.Contains(ipcSysctls, k) || strings.HasPrefix(k, "fs.mqueue."):
			ns, own = "IPC", ownIPC
		case k == "kernel.domainname":
			ns, own = "UTS", ownUTS
		default:
			return nil, invalidf("sysctl %q is not of a namespace the pod has of its own", key)
		}
		if !own {
			return nil, invalidf("sysctl %q is of the %s namespace, which the pod shares with the host", key, ns)
		}
		out = append(out, podproc.Sysctl{Key: key, Value: m[key]})
	}
	return out, nil
}

// resolvConf is the pod's /etc/resolv.conf for dns, as CRI writes it.
func resolvConf(dns *dnsConfig) []byte {
	var b strings.Builder
	if len(dns.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.Searches, " "))
	}
	for _, s := range dns.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.Options, " "))
	}
	return []byte(b.String())
}

// resources are the pod cgroup's limits for a pod's resources and overhead.
func (r linuxResources) plus(o linuxResources) cgroup.Resources {
	out := cgroup.Resources{CPUPeriod: uint64(max(r.CPUPeriod, o.CPUPeriod, 0))}
	if r.MemoryLimitInBytes > 0 {
		out.MemoryLimit = r.MemoryLimitInBytes + max(o.MemoryLimitInBytes, 0)
	}
	if r.CPUShares > 0 {
		out.CPUShares = uint64(r.CPUShares + max(o.CPUShares, 0))
	}
	if r.CPUQuota > 0 {
		out.CPUQuota = r.CPUQuota + max(o.CPUQuota, 0)
	}
	return out
}
