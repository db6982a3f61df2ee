package sandbox

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// CRI hands the sandbox its pod's configuration as an Any of
// runtime.v1.PodSandboxConfig (k8s.io/cri-api). The fields the shim needs are
// read from the wire here: the generated package would register the whole
// CRI API in every start of the shim for the sake of a dozen fields.

// criConfigType is the Any type CRI sends, with or without a URL prefix.
const criConfigType = "runtime.v1.PodSandboxConfig"

// Namespace modes of CRI's NamespaceOption.
const (
	modePod       = 0
	modeContainer = 1
	modeNode      = 2
	modeTarget    = 3
)

// podSandboxConfig is what the shim reads of a PodSandboxConfig.
type podSandboxConfig struct {
	Name, UID, Namespace string // metadata
	Hostname             string
	DNS                  dnsConfig
	Labels, Annotations  map[string]string
	CgroupParent         string
	Sysctls              map[string]string
	NetworkMode, PIDMode int
	IPCMode              int
	// Userns is set when the pod asks for a user namespace (mode POD).
	Userns              *usernsOptions
	Overhead, Resources linuxResources
}

type dnsConfig struct {
	Servers, Searches, Options []string
}

type usernsOptions struct {
	Mode       int
	UIDs, GIDs []idMapping
}

type idMapping struct {
	HostID, ContainerID, Length uint32
}

// linuxResources are the fields of LinuxContainerResources the pod cgroup
// takes. Their JSON names are the proto field names, as CRI's typeurl writes
// the UpdatedResources extension.
type linuxResources struct {
	CPUPeriod          int64 `json:"cpu_period,omitempty"`
	CPUQuota           int64 `json:"cpu_quota,omitempty"`
	CPUShares          int64 `json:"cpu_shares,omitempty"`
	MemoryLimitInBytes int64 `json:"memory_limit_in_bytes,omitempty"`
}

// isCRIConfig tells whether an Any type URL is CRI's PodSandboxConfig.
func isCRIConfig(typeURL string) bool {
	return typeURL == criConfigType || strings.HasSuffix(typeURL, "/"+criConfigType)
}

// decodePodSandboxConfig reads a PodSandboxConfig's wire bytes.
func decodePodSandboxConfig(b []byte) (*podSandboxConfig, error) {
	c := &podSandboxConfig{}
	err := eachField(b, func(num protowire.Number, v field) error {
		switch num {
		case 1: // metadata
			return eachField(v.bytes, func(num protowire.Number, v field) error {
				switch num {
				case 1:
					c.Name = v.str()
				case 2:
					c.UID = v.str()
				case 3:
					c.Namespace = v.str()
				}
				return nil
			})
		case 2:
			c.Hostname = v.str()
		case 4: // dns_config
			return eachField(v.bytes, func(num protowire.Number, v field) error {
				switch num {
				case 1:
					c.DNS.Servers = append(c.DNS.Servers, v.str())
				case 2:
					c.DNS.Searches = append(c.DNS.Searches, v.str())
				case 3:
					c.DNS.Options = append(c.DNS.Options, v.str())
				}
				return nil
			})
		case 6:
			return mapEntry(&c.Labels, v.bytes)
		case 7:
			return mapEntry(&c.Annotations, v.bytes)
		case 8:
			return c.decodeLinux(v.bytes)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", criConfigType, err)
	}
	return c, nil
}

// decodeLinux reads LinuxPodSandboxConfig.
func (c *podSandboxConfig) decodeLinux(b []byte) error {
	return eachField(b, func(num protowire.Number, v field) error {
		switch num {
		case 1:
			c.CgroupParent = v.str()
		case 2: // security_context
			return eachField(v.bytes, func(num protowire.Number, v field) error {
				if num == 1 { // namespace_options
					return c.decodeNamespaceOptions(v.bytes)
				}
				return nil
			})
		case 3:
			return mapEntry(&c.Sysctls, v.bytes)
		case 4:
			return c.Overhead.decode(v.bytes)
		case 5:
			return c.Resources.decode(v.bytes)
		}
		return nil
	})
}

func (c *podSandboxConfig) decodeNamespaceOptions(b []byte) error {
	return eachField(b, func(num protowire.Number, v field) error {
		switch num {
		case 1:
			c.NetworkMode = int(v.varint)
		case 2:
			c.PIDMode = int(v.varint)
		case 3:
			c.IPCMode = int(v.varint)
		case 5: // userns_options
			u := &usernsOptions{}
			err := eachField(v.bytes, func(num protowire.Number, v field) error {
				switch num {
				case 1:
					u.Mode = int(v.varint)
				case 2, 3:
					var m idMapping
					if err := eachField(v.bytes, func(num protowire.Number, v field) error {
						switch num {
						case 1:
							m.HostID = uint32(v.varint)
						case 2:
							m.ContainerID = uint32(v.varint)
						case 3:
							m.Length = uint32(v.varint)
						}
						return nil
					}); err != nil {
						return err
					}
					if num == 2 {
						u.UIDs = append(u.UIDs, m)
					} else {
						u.GIDs = append(u.GIDs, m)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			if u.Mode == modePod {
				c.Userns = u
			}
		}
		return nil
	})
}

func (r *linuxResources) decode(b []byte) error {
	return eachField(b, func(num protowire.Number, v field) error {
		switch num {
		case 1:
			r.CPUPeriod = int64(v.varint)
		case 2:
			r.CPUQuota = int64(v.varint)
		case 3:
			r.CPUShares = int64(v.varint)
		case 4:
			r.MemoryLimitInBytes = int64(v.varint)
		}
		return nil
	})
}

// field is one field's value: varint for varint fields, bytes for
// length-delimited ones.
type field struct {
	varint uint64
	bytes  []byte
}

func (f field) str() string { return string(f.bytes) }

// eachField calls fn for each varint and length-delimited field of a
// message; other wire types are skipped.
func eachField(b []byte, fn func(protowire.Number, field) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v field
		switch typ {
		case protowire.VarintType:
			v.varint, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			v.bytes, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n >= 0 {
				b = b[n:]
				continue
			}
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, v); err != nil {
			return err
		}
	}
	return nil
}

// mapEntry adds a map<string, string> entry (key 1, value 2) to *m.
func mapEntry(m *map[string]string, b []byte) error {
	var k, v string
	if err := eachField(b, func(num protowire.Number, f field) error {
		switch num {
		case 1:
			k = f.str()
		case 2:
			v = f.str()
		}
		return nil
	}); err != nil {
		return err
	}
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[k] = v
	return nil
}
