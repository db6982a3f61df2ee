package pod

import (
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Namespaces are a pod's user and network namespaces, by path, and the id
// mappings of its user namespace. An empty path means the pod has no
// namespace of that type: its containers share the host's.
//
// A Namespaces is not safe for concurrent use; a Pod serializes its use.
type Namespaces struct {
	UserPath    string                 `json:"userPath,omitempty"`
	NetPath     string                 `json:"netPath,omitempty"`
	UIDMappings []specs.LinuxIDMapping `json:"uidMappings,omitempty"`
	GIDMappings []specs.LinuxIDMapping `json:"gidMappings,omitempty"`
	// Owned: the shim created the namespaces and pinned them. False: they
	// were adopted from paths named by the spec.
	Owned bool `json:"owned,omitempty"`
	// Pins are the files the shim bind-mounted namespaces onto (created, or
	// derived while adopting). Release unmounts and removes them; it never
	// touches adopted paths.
	Pins []string `json:"pins,omitempty"`

	// held are open references to adopted namespaces, so that they live as
	// long as the shim even if their owner removes its pin.
	held []*os.File
}

// HasUser tells whether the pod has a user namespace of its own.
func (n *Namespaces) HasUser() bool { return n != nil && n.UserPath != "" }

// HasNet tells whether the pod has a network namespace of its own.
func (n *Namespaces) HasNet() bool { return n != nil && n.NetPath != "" }
