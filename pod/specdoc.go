package pod

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SpecDoc is a container's OCI spec (its bundle's config.json) as the shim
// reads and rewrites it: what the shim reads is decoded into Spec, and the
// rest of the document is kept as the bytes it was, written back untouched.
//
// encoding/json keeps, for the life of the process, a table for every Go
// type it has decoded or encoded: the whole of specs.Spec (seccomp,
// resources, devices, ...) came to 0.15 MB of a serving shim's 0.6 MB of
// live heap. Decoded this way it keeps tables for the few types below.
//
// Spec holds: ociVersion, hostname, root, mounts, hooks, annotations;
// process.terminal, process.args and process.user's uid and gid (the rest
// of process is not decoded); and linux's namespaces, uidMappings,
// gidMappings, sysctl and cgroupsPath (Spec.Linux is nil when the document
// has no linux). Marshal writes back mounts and linux's namespaces and id
// mappings, the fields the shim rewrites: a change to any other field of
// Spec is not written.
type SpecDoc struct {
	Spec *specs.Spec

	top   map[string]json.RawMessage // the document's members
	linux map[string]json.RawMessage // linux's members, or nil
}

// processView is what the shim reads of a spec's process.
type processView struct {
	Terminal bool     `json:"terminal,omitempty"`
	Args     []string `json:"args,omitempty"`
	User     struct {
		UID uint32 `json:"uid"`
		GID uint32 `json:"gid"`
	} `json:"user"`
}

// ParseSpec decodes a spec document. Its JSON must be well formed
// throughout; the types of the members decoded are checked, the others are
// left to the runtime.
func ParseSpec(data []byte) (*SpecDoc, error) {
	d := &SpecDoc{Spec: &specs.Spec{}}
	if err := json.Unmarshal(data, &d.top); err != nil {
		return nil, err
	}
	s := d.Spec
	if err := refuseOtherCases(d.top, "ociVersion", "hostname", "root", "mounts", "hooks", "annotations", "process", "linux"); err != nil {
		return nil, err
	}
	if err := decodeMembers(d.top, []member{
		{"ociVersion", &s.Version},
		{"hostname", &s.Hostname},
		{"root", &s.Root},
		{"mounts", &s.Mounts},
		{"hooks", &s.Hooks},
		{"annotations", &s.Annotations},
	}); err != nil {
		return nil, err
	}
	if present(d.top, "process") {
		var p processView
		if err := decodeMember(d.top, "process", &p); err != nil {
			return nil, err
		}
		s.Process = &specs.Process{Terminal: p.Terminal, Args: p.Args, User: specs.User{UID: p.User.UID, GID: p.User.GID}}
	}
	if present(d.top, "linux") {
		if err := decodeMember(d.top, "linux", &d.linux); err != nil {
			return nil, err
		}
		if err := refuseOtherCases(d.linux, "namespaces", "uidMappings", "gidMappings", "sysctl", "cgroupsPath"); err != nil {
			return nil, fmt.Errorf("linux: %w", err)
		}
		l := &specs.Linux{}
		if err := decodeMembers(d.linux, []member{
			{"namespaces", &l.Namespaces},
			{"uidMappings", &l.UIDMappings},
			{"gidMappings", &l.GIDMappings},
			{"sysctl", &l.Sysctl},
			{"cgroupsPath", &l.CgroupsPath},
		}); err != nil {
			return nil, fmt.Errorf("linux: %w", err)
		}
		s.Linux = l
	}
	return d, nil
}

// Marshal is the document with Spec's mounts and linux namespaces and id
// mappings written in.
func (d *SpecDoc) Marshal() ([]byte, error) {
	top := make(map[string]json.RawMessage, len(d.top)+2)
	for k, v := range d.top {
		top[k] = v
	}
	if err := setMember(top, "mounts", d.Spec.Mounts, len(d.Spec.Mounts) == 0); err != nil {
		return nil, err
	}
	if l := d.Spec.Linux; l != nil {
		linux := make(map[string]json.RawMessage, len(d.linux)+3)
		for k, v := range d.linux {
			linux[k] = v
		}
		for _, m := range []struct {
			key   string
			v     any
			empty bool
		}{
			{"namespaces", l.Namespaces, len(l.Namespaces) == 0},
			{"uidMappings", l.UIDMappings, len(l.UIDMappings) == 0},
			{"gidMappings", l.GIDMappings, len(l.GIDMappings) == 0},
		} {
			if err := setMember(linux, m.key, m.v, m.empty); err != nil {
				return nil, err
			}
		}
		if err := setMember(top, "linux", linux, false); err != nil {
			return nil, err
		}
	}
	return json.Marshal(top)
}

// present tells whether the object has a member key that is not null.
func present(obj map[string]json.RawMessage, key string) bool {
	raw, ok := obj[key]
	return ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// member is where a member of an object is decoded to.
type member struct {
	key string
	v   any
}

func decodeMembers(obj map[string]json.RawMessage, members []member) error {
	for _, m := range members {
		if err := decodeMember(obj, m.key, m.v); err != nil {
			return err
		}
	}
	return nil
}

// refuseOtherCases refuses a member of obj whose name differs from one of
// the names the shim reads only in case: encoding/json (and so runc) would
// take it for that member, and the shim would not see it.
func refuseOtherCases(obj map[string]json.RawMessage, names ...string) error {
	for k := range obj {
		for _, name := range names {
			if k != name && strings.EqualFold(k, name) {
				return fmt.Errorf("member %q: the OCI spec names it %q", k, name)
			}
		}
	}
	return nil
}

// decodeMember decodes the member key of obj into v, if present.
func decodeMember(obj map[string]json.RawMessage, key string, v any) error {
	if !present(obj, key) {
		return nil
	}
	if err := json.Unmarshal(obj[key], v); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// setMember sets the member key of obj to v, or removes it when empty (as
// the spec's omitempty does).
func setMember(obj map[string]json.RawMessage, key string, v any, empty bool) error {
	if empty {
		delete(obj, key)
		return nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	obj[key] = raw
	return nil
}
